"""The chart pages send (app.ui.chart_element) is the element st.plotly_chart sends, made once per figure.

The fast path builds Streamlit's PlotlyChart message itself from internal pieces; these tests fail if a Streamlit
upgrade makes the two differ (spec, config, theme, element id, size), and check that the JSON is made once."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _elements(key: str, native: bool, height: int | None):
    def script(key: str, native: bool, height: int | None) -> None:
        import numpy as np
        import plotly.graph_objects as go
        import streamlit as st
        from streamlit.delta_generator import DeltaGenerator

        from app.ui import presentation
        from app.ui.chart_element import send_plotly

        layouts = st.session_state.setdefault("layouts", [])
        original = DeltaGenerator._enqueue

        def recording(self, delta_type, element_proto, layout_config=None, **kwargs):
            if delta_type == "plotly_chart":
                layouts.append((layout_config.width, layout_config.height))
            return original(self, delta_type, element_proto, layout_config=layout_config, **kwargs)

        DeltaGenerator._enqueue = recording
        try:
            figure = go.Figure(go.Scatter(x=np.arange(200), y=np.sqrt(np.arange(200)), name="loss <b>run</b>"))
            figure.add_scatter(x=np.arange(200), y=np.arange(200) * 0.5, name="other")
            if height:
                figure.update_layout(height=height)
            entry = presentation._styled_entry(figure, False)
            left, right = st.columns(2)
            for container in (st, right):  # the page itself and a column
                if native:
                    container.plotly_chart(entry.figure, key=f"{key}_{container is st}",
                                           config=presentation.CHART_CONFIG)
                else:
                    send_plotly(container, entry, f"{key}_{container is st}", presentation.CHART_CONFIG)
        finally:
            DeltaGenerator._enqueue = original

    at = AppTest.from_function(script, args=(key, native, height)).run()
    assert not at.exception
    return [e.proto for e in at.get("plotly_chart")], at.session_state["layouts"]


def test_the_fast_chart_is_the_element_st_plotly_chart_sends():
    for height in (None, 320):
        native, native_layouts = _elements("chart", True, height)
        ours, our_layouts = _elements("chart", False, height)
        assert len(native) == len(ours) == 2
        for theirs, mine in zip(native, ours):
            assert mine.spec == theirs.spec and '"other"' in mine.spec
            assert (mine.config, mine.theme, mine.form_id, mine.id) == \
                (theirs.config, theirs.theme, theirs.form_id, theirs.id)
            assert '"displaylogo": false' in mine.config
        assert our_layouts == native_layouts
        assert our_layouts[0] == ("stretch", (height or 450) + 22)  # the legend's row added to the height (styled)


def test_a_figure_is_encoded_once_for_every_session_and_tick(monkeypatch):
    import plotly.graph_objects as go

    from app.ui import chart_element, presentation

    calls = []
    encode = chart_element.plotly_json
    monkeypatch.setattr(chart_element, "plotly_json", lambda figure: calls.append(1) or encode(figure))

    def script() -> None:
        import streamlit as st

        from app.ui import presentation

        presentation.plotly_chart(st.session_state["figure"], key="shared")

    figure = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))
    for _ in range(3):  # three sessions showing one shared figure
        at = AppTest.from_function(script)
        at.session_state["figure"] = figure
        at.run()
        assert not at.exception and len(at.get("plotly_chart")) == 1
    assert len(calls) == 1
    styled = presentation.styled(figure, False)
    assert at.get("plotly_chart")[0].proto.spec == chart_element.plotly_json(styled)
