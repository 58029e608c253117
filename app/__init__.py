"""TrainLens dashboard: Streamlit pages (app/views) over pure figure/data modules (series, figures)."""
