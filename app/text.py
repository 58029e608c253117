"""User and engine text shown literally in Streamlit markdown.

Run names, group names, error messages and file names come from users (or from the engine quoting them): in
markdown they must stay text, never become links, images, headings or code fences. `escape_md` backslash-escapes
the characters that give markdown its meaning there; Streamlit's own `st.text`/dataframes need no escaping.
"""

from __future__ import annotations

import re

# brackets and "!" (links, images, colour directives), backticks (code), *_~ (emphasis), # (headings), < > (HTML
# and autolinks), | (tables), $ (math), {} and the backslash itself; with newlines folded, no line can start a
# list, a heading or a fence
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$!])")


def escape_md(text: object) -> str:
    """`text` as markdown that renders exactly as the characters typed (newlines become spaces)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
