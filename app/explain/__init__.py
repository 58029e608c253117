"""Parts of the Explain page (app/views/explain.py), each a function the page script calls: `subject.py` (the model
asked), `picture.py` (the image), `prediction.py` (what the model says about it), `maps.py` (the attribution maps,
inline or on the server's job board), `trust.py` (across training, sanity check); `own_model_form.py` and
`text_explain.py` (a text run's whole page) are what `subject.py` hands over to. Streamlit and torch allowed;
imports app/charts/, app/server/ and app/ui/, never another page's parts or a page."""
