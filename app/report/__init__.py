"""The Run report's sections: each a function of explicit arguments (the store, the run, its config), so the page
script (app/views/run_detail.py) only selects the run and lays the sections out."""
