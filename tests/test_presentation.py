"""Projector mode's figure styling: legends under the plot in every mode, projector sizes (16 px and up) only when
presenting, band edges left invisible; the settings file's default."""

from __future__ import annotations

import plotly.graph_objects as go

from app.charts.metrics import ChartOptions, metric_chart
from app.ui import presentation
from test_figures import make_runs


def test_legends_go_under_the_plot_and_projector_mode_enlarges_what_is_read():
    metrics, runs = make_runs()
    normal = presentation.style_figure(metric_chart(metrics, runs, "loss").figure, present=False)
    assert normal.layout.legend.yref == "container" and normal.layout.legend.y == 0
    assert normal.layout.legend.orientation == "h" and normal.layout.font.size is None
    big = presentation.style_figure(metric_chart(metrics, runs, "loss", ChartOptions(group_by="cfg.optimizer")).figure,
                                    present=True)
    assert big.layout.xaxis.tickfont.size >= 16 and big.layout.yaxis.tickfont.size >= 16
    assert big.layout.legend.font.size >= 16 and big.layout.yaxis.title.font.size > big.layout.yaxis.tickfont.size
    lines = [t for t in big.data if t.fill is None and t.hoverinfo != "skip"]
    edges = [t for t in big.data if t.hoverinfo == "skip"]
    assert lines and all(t.line.width == presentation.LINE_WIDTH for t in lines)
    assert edges and all(t.line.width == 0 for t in edges)  # the band stays a fill, not two extra lines


def test_a_single_trace_reserves_no_room_for_a_legend():
    figure = presentation.style_figure(go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="only")), present=False)
    assert figure.layout.height is None  # Plotly shows no legend for one trace: nothing added under the plot


def test_the_default_comes_from_the_settings_file(tmp_path, monkeypatch):
    monkeypatch.setattr(presentation, "SETTINGS_FILE", tmp_path / "trainlens_settings.toml")
    assert presentation.default_on() is False  # no file
    (tmp_path / "trainlens_settings.toml").write_text("[presentation]\ndefault = true\n")
    assert presentation.default_on() is True
    (tmp_path / "trainlens_settings.toml").write_text("not toml [")
    assert presentation.default_on() is False


def test_a_shared_figure_is_styled_once_per_mode_on_a_copy_dropped_with_it():
    import gc

    import plotly.graph_objects as go

    from app.ui import presentation

    figure = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    plain, again, projector = (presentation.styled(figure, False), presentation.styled(figure, False),
                               presentation.styled(figure, True))
    assert plain is again and plain is not projector and plain is not figure
    assert figure.layout.legend.orientation is None  # the shared original is never styled
    del figure, plain, again, projector
    gc.collect()
    assert not presentation._STYLED
