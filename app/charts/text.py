"""User and engine text shown literally: in Streamlit markdown, in Plotly labels, in CSV cells.

Run names, group names, lesson titles, class labels, error messages and file names come from users and their files
(or from the engine quoting them): in markdown they must stay text, never become links, images, headings or code
fences. `escape_md` backslash-escapes
the characters that give markdown its meaning there; Streamlit's own `st.text`/dataframes need no escaping.
Plotly draws a small HTML subset in legends and hover labels (`<b>`, `<a href>`...): `plotly_text` turns the
markup characters into entities, which Plotly shows as the characters typed. `csv_cell` keeps a spreadsheet from
reading a name such as `=HYPERLINK(...)` as a formula.
"""

from __future__ import annotations

import re

# brackets and "!" (links, images, colour directives), backticks (code), *_~ (emphasis), # (headings), < > (HTML
# and autolinks), | (tables), $ (math), {} and the backslash itself; with newlines folded, no line can start a
# list, a heading or a fence
# ":" too: it starts Streamlit's :colour[...] and :material/icon: directives
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$!:])")
# Bare URLs and e-mail addresses are linked after escapes are resolved (GitHub-style autolink literals), so no
# backslash stops them: an invisible WORD JOINER (U+2060) between "http" and ":", "www" and ".", and before an "@"
# that follows a character of an address's local part keeps them text. What a reader sees does not change, but a
# copy of the text carries the joiner: an "@" after a space ("Adam @ 0.002") starts no address and gets none.
_JOINER = "\u2060"
_AUTOLINKS = (re.compile(r"(?i)\b(https?|ftp|mailto)(?=\\:)"), re.compile(r"(?i)\b(www)(?=\.)"),
              re.compile(r"(?<=[\w.+\-])()(?=@)"))
# Bidirectional controls reorder the text around them: U+202E shows "gpj.exe" as "exe.jpg". Names refuse them
# (engine.records.hidden_character); text that may still hold them (a CSV's class labels, names stored before the
# refusal) shows each as a visible code instead, so what is read is what is there.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def show_controls(text: str) -> str:
    """`text` with every bidirectional control written out as a visible code, e.g. '[U+202E]'."""
    return _BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def escape_md(text: object) -> str:
    """`text` as markdown that renders exactly as the characters typed (newlines become spaces; bidirectional
    controls written out: see show_controls)."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(show_controls(str(text)).split()))
    for pattern in _AUTOLINKS:
        escaped = pattern.sub(lambda m: m.group(1) + _JOINER, escaped)
    return escaped


def plotly_text(text: object) -> str:
    """`text` for a Plotly legend, title, tick or hover label: shown as typed, never as markup (bidirectional
    controls written out: see show_controls)."""
    return show_controls(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: object) -> str:
    """A text cell a spreadsheet opens as text: a leading ' when it would start a formula (OWASP's advice)."""
    text = str(text)
    return "'" + text if text.startswith(_FORMULA_START) else text
