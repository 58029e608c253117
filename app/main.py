"""TrainLens dashboard entry point: `streamlit run app/main.py`.

Only routing lives here (st.navigation over the pages in app/views/, behind the class sign-in of app.ui.identity when
class mode is on; every page first checks the TRAINLENS_* settings, engine.settings), and, once the server's first page
is drawn, the warm-up of the worker pool (app.ui.state.start_pool_warmup); the pages talk to the engine's
store and runner, never train in the page script.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ on sys.path; the engine and `app.*` imports need the repo root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlite3  # noqa: E402

import streamlit as st  # noqa: E402

from app.charts.text import escape_md  # noqa: E402
from engine import settings  # noqa: E402

if settings.problems():  # before any module reads a setting: one message naming each bad value, on every page
    st.set_page_config(page_title="TrainLens", layout="wide")
    st.error("**TrainLens cannot start with these settings.** Fix each environment variable below, then restart "
             "the server.\n\n" + "\n".join(f"- {escape_md(problem)}" for problem in settings.problems()),
             icon=":material/settings:")
    st.stop()

from app.server.memory import collect_now_and_then, freeze_imports  # noqa: E402
from app.ui import identity  # noqa: E402
from app.ui.presentation import page_style, presenting  # noqa: E402
from app.ui.state import back_up_store_once, get_store, pool_warmup, start_pool_warmup, store_problem  # noqa: E402

# A local icon: a ":material/...:" page icon is fetched from a font host, and the dashboard must work offline
# projector mode (?present=1) starts with the sidebar folded away: the charts get the whole width
st.set_page_config(page_title="TrainLens", page_icon=str(ROOT / "assets" / "icon.png"), layout="wide",
                   initial_sidebar_state="collapsed" if presenting() else "auto")

PAGES = [
    # first in the navigation; Train stays the page "/" opens (bookmarks and scripts rely on it)
    st.Page("views/lessons.py", title="Lessons", icon=":material/menu_book:"),
    st.Page("views/train.py", title="Train", icon=":material/play_circle:", default=True),
    st.Page("views/runs.py", title="Runs", icon=":material/table_rows:"),
    st.Page("views/compare.py", title="Compare", icon=":material/stacked_line_chart:"),
    st.Page("views/run_report.py", title="Run report", icon=":material/fact_check:"),
    st.Page("views/explain.py", title="Explain", icon=":material/visibility:"),
]
CLASS_PAGE = st.Page("views/classroom.py", title="Class", icon=":material/school:")
# old addresses that bookmarks still hold: not in the navigation, each opens the page it became
OLD_ADDRESSES = [st.Page("views/run_detail.py", title="Run report", url_path="run_detail", visibility="hidden")]

try:
    problem = store_problem()
    if problem is not None:  # damaged, on a full disk, newer schema...: one clear message instead of every page crashing
        st.error(problem, icon=":material/database:")
        st.stop()
    # who is here: the local user, or a signed-in student/teacher (class mode); the sign-in form stops the page
    actor = identity.gate(get_store())
    page = st.navigation(PAGES + ([CLASS_PAGE] if identity.class_mode().enabled else []) + OLD_ADDRESSES)
    identity.sidebar(actor, get_store())
    warmup = pool_warmup()
    if warmup is not None and warmup.error:
        st.sidebar.warning(f"The training workers could not be started in advance: {warmup.error}. Runs still queue, "
                           "and starting one tries again.", icon=":material/warning:")
    st.sidebar.caption("TrainLens: watch neural networks learn. Runs train in background workers and survive page "
                       "reloads.")
    page_style()
    back_up_store_once()
    try:
        page.run()
    except sqlite3.DatabaseError as exc:  # met mid-page: a damaged page deep in the file, the disk filling up
        from engine.paths import db_path
        from engine.runs.store.errors import describe

        st.error(escape_md(describe(exc, db_path())), icon=":material/database:")
    except ValueError as exc:  # an unreadable checkpoint met by a page part that did not expect one
        checkpoints = sys.modules.get("engine.checkpoints")  # loaded if it raised: this file never imports torch
        if checkpoints is None or not isinstance(exc, checkpoints.CheckpointUnreadable):
            raise
        st.error(escape_md(exc), icon=":material/broken_image:")
finally:
    # Once the server's first page is drawn, fill the worker pool from a background thread (once per server process):
    # the worker template imports torch for seconds, and now does it before the first Start instead of after it.
    # Not earlier: a process importing torch beside the first page's own script would slow that page (2 cores).
    start_pool_warmup()
    # after the page's imports: later collections skip the modules' objects (app/server/memory.py)
    freeze_imports()
    collect_now_and_then()
