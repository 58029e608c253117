"""The Run report's sections: each a function of explicit arguments (the store, the run, its config), so the page
script (app/views/run_report.py) only selects the run and lays the sections out. Streamlit allowed; imports
app/charts/, app/server/ and app/ui/, never another page's parts or a page."""
