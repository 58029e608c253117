"""Projector mode and the one way pages show a Plotly chart.

`?present=1` in the URL (or `default = true` under [presentation] in trainlens_settings.toml, next to
streamlit_config.toml) turns on projector mode on every page: large type (16 px and up on the axes at 1024x768),
thick lines, the sidebar collapsed, legends below the plot. `plotly_chart` is what pages call instead of
st.plotly_chart: in every mode it puts the legend under the plot area (a legend above the plot sits under the
Plotly toolbar and, with many entries, over the curves) and keeps the toolbar hidden until the pointer is on the
chart; in projector mode it also enlarges fonts, lines and markers.
"""

from __future__ import annotations

import threading
import weakref

import tomllib
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

SETTINGS_FILE = Path(__file__).resolve().parent.parent / "trainlens_settings.toml"
PARAM = "present"
FONT_PX = 18  # tick labels and legend at projector size; axis titles a little larger
TITLE_PX = 20
LINE_WIDTH = 4


_default_read: dict = {}  # (path, mtime, size) -> value: parsed again only when the file changes


def default_on() -> bool:
    """The settings file's default for projector mode (False when the file is missing or unreadable). Every chart
    of every live tick asks, so the file is parsed again only when it changes (a stat is all the rest cost)."""
    try:
        stat = SETTINGS_FILE.stat()
        signature = (str(SETTINGS_FILE), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return False
    if signature in _default_read:
        return _default_read[signature]
    try:
        settings = tomllib.loads(SETTINGS_FILE.read_text(encoding="utf-8"))
        value = bool(settings.get("presentation", {}).get("default", False))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError):
        value = False
    _default_read.clear()
    _default_read[signature] = value
    return value


def presenting() -> bool:
    """True in projector mode: `?present=1` (0 turns it off), else the settings file's default."""
    value = st.query_params.get(PARAM)
    if value in ("1", "0"):
        return value == "1"
    return default_on()


# Larger type everywhere, the header toolbar out of the way, narrower side margins (at 1024 px Streamlit's own
# 5rem a side left 82% of a projector's width to the page); constant CSS (no user text goes in here).
_PROJECTOR_CSS = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 20px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.15rem; }
[data-testid="stWidgetLabel"] p { font-size: 1.05rem; }
h1 { font-size: 1.6rem !important; }
h3 { font-size: 1.45rem !important; }
.block-container { padding-top: 4rem; padding-left: 2.5rem; padding-right: 2.5rem; }
h1 { padding-top: 0.25rem; }
</style>
"""


def page_style() -> None:
    """Call once per page run (app/main.py): the projector toggle in the sidebar and, when on, its page CSS."""
    on = presenting()
    toggled = st.sidebar.toggle("Projector mode", value=on, key="projector_mode",
                                help="Large type, thick lines and legends below the charts, for a classroom "
                                     "projector. Kept in the URL (?present=1), so a bookmark opens in this mode.")
    if toggled != on:
        st.query_params[PARAM] = "1" if toggled else "0"
        st.rerun()
    if on:
        st.html(_PROJECTOR_CSS)


def style_figure(figure: go.Figure, present: bool) -> go.Figure:
    """The legend at the bottom of the figure, under the x axis title (all modes); projector sizes when `present`.
    Returns the same figure."""
    entries = sum(1 for trace in figure.data if trace.showlegend is not False and trace.name)
    shown = figure.layout.showlegend is True or (figure.layout.showlegend is None and entries > 1)  # Plotly's rule
    rows = min(6, -(-entries // 3)) if shown else 0  # about three entries fit a row of a half-width chart
    row_px = 30 if present else 22
    # yref="container": placed from the figure's own bottom edge, so it never overlaps the axis title above it
    figure.update_layout(legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left",
                                     title=dict(text="")))
    bottom = (95 if present else 60) + row_px * rows
    if not present:
        figure.update_layout(margin=dict(b=max(figure.layout.margin.b or 0, bottom), t=30))
        if rows:  # the legend takes its rows from the figure's height, not from the plot area
            figure.update_layout(height=(figure.layout.height or 450) + row_px * rows)
        return figure
    figure.update_layout(font=dict(size=FONT_PX, color="#111111"), legend=dict(font=dict(size=FONT_PX)),
                         hoverlabel=dict(font=dict(size=FONT_PX)), margin=dict(l=90, r=30, t=30, b=bottom),
                         height=(figure.layout.height or 450) + 40 + row_px * rows)
    for axis in ("xaxis", "yaxis"):
        figure.update_layout({axis: dict(tickfont=dict(size=FONT_PX, color="#111111"),
                                         title=dict(font=dict(size=TITLE_PX, color="#111111")),
                                         linewidth=2, linecolor="#444444", gridcolor="#d0d0d0")})
    for trace in figure.data:
        if trace.type in ("scatter", "scattergl"):
            width = trace.line.width if trace.line and trace.line.width is not None else 2
            if width > 0:  # band edges have width 0 and stay so
                trace.line.width = LINE_WIDTH if width >= 2 else 2
            if trace.marker is not None and trace.marker.size:
                trace.marker.size = max(trace.marker.size, 12)
    return figure


class _Styled:
    """A figure's styled copy for one mode, and that copy's Plotly JSON once a page has sent it."""

    __slots__ = ("figure", "spec")

    def __init__(self, figure: go.Figure):
        self.figure, self.spec = figure, None


_STYLED: dict[int, tuple[weakref.ref, dict[bool, _Styled]]] = {}  # id(figure) -> (figure, {present: styled})
_STYLED_LOCK = threading.Lock()


def prestyled(figure: go.Figure, present: bool) -> go.Figure:
    """Style `figure` for the mode in place, once, when it is built to be shared (app.ui.state.shared_figure): pages
    then send it as it is, with no styled copy (copying a figure of 16 long lines costs ~50 ms)."""
    style_figure(figure, present)
    figure._trainlens_styled = _Styled(figure), present  # plotly keeps attributes named with "_" off the figure
    return figure


def _styled_entry(figure: go.Figure, present: bool) -> _Styled:
    own = getattr(figure, "_trainlens_styled", None)
    if own is not None and own[1] == present:
        return own[0]
    key = id(figure)
    with _STYLED_LOCK:
        held = _STYLED.get(key)
        entry = held[1].get(present) if held is not None and held[0]() is figure else None
    if entry is None:
        entry = _Styled(style_figure(go.Figure(figure), present))
        with _STYLED_LOCK:
            held = _STYLED.get(key)
            if held is None or held[0]() is not figure:
                held = (weakref.ref(figure, lambda _, key=key: _forget(key)), {})
                _STYLED[key] = held
            entry = held[1].setdefault(present, entry)
    return entry


def styled(figure: go.Figure, present: bool) -> go.Figure:
    """`figure` styled for the mode, on a copy: the figure may be shared between sessions (a cached figure), and
    styling twice would add the legend's room twice. The copy is kept while the figure lives (figures are not
    hashable, so they are held by id with a weak reference that drops the entry with the figure), so thirty
    sessions showing one shared figure copy and style it once (a copy costs tens of ms per figure)."""
    return _styled_entry(figure, present).figure


def _forget(key: int) -> None:
    with _STYLED_LOCK:
        held = _STYLED.get(key)
        if held is not None and held[0]() is None:
            del _STYLED[key]


CHART_CONFIG = {"displaylogo": False, "displayModeBar": "hover"}


def plotly_chart(figure: go.Figure, *, key: str, container=None, **kwargs):
    """st.plotly_chart with the page's presentation applied (see module doc); `container` is a column or None.

    Without extra arguments the chart goes out through `app.ui.chart_element`, which sends the styled figure's JSON
    made once per figure (st.plotly_chart converts and encodes the figure on every call: ~12 ms per chart, five
    charts per Compare tick, for each of thirty students watching the same shared figures)."""
    present = presenting()
    dg = container or st
    if kwargs:
        return dg.plotly_chart(styled(figure, present), key=key, config=CHART_CONFIG, **kwargs)
    from app.ui.chart_element import send_plotly

    return send_plotly(dg, _styled_entry(figure, present), key, CHART_CONFIG)
