"""The pages: thin scripts that select and lay out, run by Streamlit by path (app/main.py's st.Page list), never
imported. A page calls its parts (app/train/, app/explain/, app/report/) and may import every lower floor; no page
imports another (links name the file: st.page_link("views/compare.py"))."""
