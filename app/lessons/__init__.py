"""Parts of the Lessons page (app/views/lessons.py): which launch of a lesson a session sees and who may start one.
Streamlit allowed; imports app/charts/, app/server/ and app/ui/, never another page's parts or a page."""
