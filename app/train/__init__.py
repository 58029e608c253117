"""Parts of the Train page (app/views/train.py): the RunConfig form and the preview and CSV upload of a text run.
Streamlit allowed; imports app/charts/, app/server/ and app/ui/, never another page's parts or a page."""
