"""TrainLens dashboard entry point: `streamlit run app/main.py`.

Only routing lives here (st.navigation over the pages in app/views/), and, once the server's first page
is drawn, the warm-up of the worker pool (app.state.start_pool_warmup); the pages talk to the engine's
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

from app.state import pool_warmup, start_pool_warmup  # noqa: E402

st.set_page_config(page_title="TrainLens", page_icon=":material/monitoring:", layout="wide")

PAGES = [
    st.Page("views/train.py", title="Train", icon=":material/play_circle:", default=True),
    st.Page("views/runs.py", title="Runs", icon=":material/table_rows:"),
    st.Page("views/compare.py", title="Compare", icon=":material/stacked_line_chart:"),
    st.Page("views/run_detail.py", title="Run report", icon=":material/fact_check:"),
    st.Page("views/explain.py", title="Explain", icon=":material/visibility:"),
]

page = st.navigation(PAGES)
warmup = pool_warmup()
if warmup is not None and warmup.error:
    st.sidebar.warning(f"The training workers could not be started in advance: {warmup.error}. Runs still queue, "
                       "and starting one tries again.", icon=":material/warning:")
st.sidebar.caption("TrainLens: watch neural networks learn. Runs train in background workers and survive page reloads.")
try:
    page.run()
finally:
    # Once the server's first page is drawn, fill the worker pool from a background thread (once per server process):
    # a worker imports torch for seconds, and now does it before the first Start instead of after it. Not earlier:
    # workers importing torch beside the first page's own script would slow that page down (2 cores).
    start_pool_warmup()
