"""The Run report's old address: a bookmark of /run_detail?run=... (the page's name before it became the Run report)
opens the Run report of the same run, with the same query parameters. Hidden from the navigation (app/main.py)."""

from __future__ import annotations

import streamlit as st

st.switch_page("views/run_report.py", query_params=st.query_params.to_dict())
