"""Process-wide server state shared by every session of one Streamlit server: the metrics cache, the shared figures,
the server's load meter, its garbage collection and the Explain page's job board. The folder's rule: no streamlit
(app/ui/state.py holds their instances in st.cache_resource), so tests drive them directly; besides the engine it
imports only app/charts/."""
