"""Parts of the Explain page (app/views/explain.py): the sections the page script calls, and the forms and the text
runs' view it hands over to. Streamlit and torch allowed; imports app/charts/, app/server/ and app/ui/, never another
page's parts or a page."""
