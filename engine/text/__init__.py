"""Text as a task: a synthetic sentiment corpus with ground-truth relevance, readers of the official formats of
real corpora and of a user's CSV, word-level tokenisation, and the text models. Attributions over tokens live
in `engine.explain.text`.

Token ids are int64 tensors [N, L] padded with PAD_ID (0) at the end; every model finds a sentence's length
from them, so a prediction never depends on how much padding a batch adds.
"""
