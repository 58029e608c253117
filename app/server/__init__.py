"""Process-wide server state shared by every session of one Streamlit server: the metrics cache, the shared figures,
the server's load meter, its garbage collection and the Explain page's job board. The folder's rule: no streamlit
(app/ui/state.py holds their instances in st.cache_resource), so tests drive them directly, and no torch (the job
board runs the torch work it is handed); besides the engine it may import app/charts/ only."""
