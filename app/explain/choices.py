"""The Explain page's choices that must hold while the input changes: the methods (and views) chosen, and the class
the maps explain.

Streamlit forgets a widget's value after a run that did not draw it, and the page stops short of its maps while a
file is being chosen for upload (app/explain/picture.py), so methods picked before an upload were back to the
defaults after it. `remember` keeps a copy under a key no widget owns and puts it back. The class to explain is the
prediction for each new input (a new sentence, image or checkpoint) unless the user picks another class for that
input: a class picked for the previous sentence never carries over to the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import streamlit as st

KEPT = "_kept:"  # prefix of the copies (no widget has such a key)


def remember(key: str) -> bool:
    """Before drawing the widget `key`: restore its last value if Streamlit forgot it. Returns whether the widget
    has a value (draw it without a default then: Streamlit warns about a default beside a set value)."""
    if key not in st.session_state and KEPT + key in st.session_state:
        st.session_state[key] = st.session_state[KEPT + key]
    return key in st.session_state


def kept(key: str, value: Any) -> Any:
    """After drawing the widget `key`: keep a copy of its `value` for the runs that will not draw it."""
    st.session_state[KEPT + key] = value
    return value


def class_to_explain(where, key: str, input_key: Hashable, predicted: int, options: Sequence[int],
                     format_func: Callable[[int], str]) -> int:
    """The "Explain the class" choice in `where`: `predicted` for each new `input_key`, else the user's pick."""
    picked = st.session_state.get(KEPT + key)
    if picked is None or picked[0] != input_key:
        st.session_state[key] = predicted  # a new input: follow its prediction
    elif key not in st.session_state:
        st.session_state[key] = picked[1]  # the same input, the widget forgotten by a run that did not draw it
    target = where.selectbox("Explain the class", list(options), key=key, format_func=format_func)
    st.session_state[KEPT + key] = (input_key, target)
    return int(target)
