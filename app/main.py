"""TrainLens dashboard entry point: `streamlit run app/main.py`.

Only routing lives here (st.navigation over the pages in app/views/); the pages talk to the engine's
store and runner, never train in the page script.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ on sys.path; the engine and `app.*` imports need the repo root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="TrainLens", page_icon=":material/monitoring:", layout="wide")

PAGES = [
    st.Page("views/train.py", title="Train", icon=":material/play_circle:", default=True),
    st.Page("views/runs.py", title="Runs", icon=":material/table_rows:"),
    st.Page("views/compare.py", title="Compare", icon=":material/stacked_line_chart:"),
    st.Page("views/run_detail.py", title="Run report", icon=":material/fact_check:"),
    st.Page("views/explain.py", title="Explain", icon=":material/visibility:"),
]

page = st.navigation(PAGES)
st.sidebar.caption("TrainLens: watch neural networks learn. Runs train in background workers and survive page reloads.")
page.run()
