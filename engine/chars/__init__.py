"""Character-level language modelling: corpora that work offline, the models that write them, and sampling.

`corpus.py` reads the documents (real names from the `names` package, the `sentiment` reviews, a user's text
file), `data.py` turns them into a split of character ids with the next character as each position's label,
`models.py` holds the models (bigram table, MLP over a context window, RNN/GRU/LSTM, a small GPT) and
`sampling.py` writes with a model. Sits on the floor of `engine.text` (it reuses the review generator);
`engine.data.loading` loads it, and it never imports `engine.data`.
"""
