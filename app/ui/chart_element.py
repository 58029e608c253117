"""Send a Plotly chart whose JSON is made once per figure, not once per page run.

`st.plotly_chart` converts the figure to a dict (a deep copy of every trace's arrays) and encodes it as JSON on
every call: ~12 ms for a chart of 16 lines of 1,500 points. A live Compare view draws five such charts per tick, and
in a class thirty sessions draw the same shared figures (app/server/figure_cache.py), so the server encoded the same
JSON thirty times a second. `send_plotly` makes the JSON once per styled figure (kept beside it by
app.ui.presentation) and sends the same element `st.plotly_chart` sends: the same PlotlyChart message, element id,
theme and size.

It builds the element from Streamlit's own pieces (the PlotlyChart proto, the element id and form helpers,
`DeltaGenerator._enqueue`), which are internal: if a Streamlit upgrade moves them, charts fall back to
`st.plotly_chart` (slower, never broken), and tests/test_chart_element.py compares the two messages field by field.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

try:  # Streamlit internals (pinned version in requirements.txt); see the module doc for the fallback
    import plotly.io
    import plotly.tools
    from streamlit.elements.lib.form_utils import current_form_id
    from streamlit.elements.lib.layout_utils import LayoutConfig
    from streamlit.elements.lib.utils import compute_and_register_element_id
    from streamlit.elements.plotly_chart import _resolve_content_height
    from streamlit.proto.PlotlyChart_pb2 import PlotlyChart

    AVAILABLE = True
except ImportError:  # pragma: no cover - only after an incompatible Streamlit upgrade
    AVAILABLE = False

# st.plotly_chart's defaults: the arguments its element id is computed from (the frontend keys state by the id)
_SELECTION_MODE = ("points", "box", "lasso")
_THEME = "streamlit"


def plotly_json(figure) -> str:
    """The JSON st.plotly_chart would send for `figure` (same conversion, same encoder)."""
    return plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(figure, validate_figure=True),
                             validate=False)


def send_plotly(dg: Any, styled: Any, key: str, config: dict) -> Any:
    """Show `styled.figure` (an app.ui.presentation styled entry) in `dg` (st or a container) as st.plotly_chart
    would, encoding it only the first time; `styled.spec` keeps the JSON for the next session or tick."""
    if not AVAILABLE:
        return dg.plotly_chart(styled.figure, key=key, config=config)
    if styled.spec is None:
        # the figure object answers the height as st.plotly_chart's dict would ("content": the layout's height)
        styled.spec = (plotly_json(styled.figure), _resolve_content_height("content", styled.figure))
    spec, height = styled.spec
    target = st._main if dg is st else dg
    proto = PlotlyChart()
    proto.theme = _THEME
    proto.form_id = current_form_id(target)
    proto.spec = spec
    proto.config = json.dumps(config)
    proto.id = compute_and_register_element_id(
        "plotly_chart", user_key=key, key_as_main_identity=False, dg=target, plotly_spec=proto.spec,
        plotly_config=proto.config, selection_mode=_SELECTION_MODE, is_selection_activated=False, theme=_THEME,
        width="stretch", height="content", alt=None)
    return target._enqueue("plotly_chart", proto, layout_config=LayoutConfig(width="stretch", height=height))
