"""Pure figure and table builders and text formatting: DataFrames and arrays in, Plotly figures, tables and strings
out. The folder's rule: no streamlit and no torch (tests check every figure without a browser or a model, and a page
must not pay torch's import to draw a curve); imports nothing of the app outside this folder. `text.py` (literal
text in markdown, Plotly and CSV) is the lowest floor: everything may use it."""
