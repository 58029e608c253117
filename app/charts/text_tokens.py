"""Token attributions as coloured text: pure functions (no streamlit, no torch), so they are tested directly.

Every token comes from a user (a typed sentence, a CSV) and is escaped with `html.escape` before it goes
into the markup: `<script>` reaches the page as the seven characters `&lt;script&gt;`, shown as text. The
colours follow the image maps' diverging scale (RdBu): red pushes towards the explained class, blue against,
the strength of the colour is |score| / max |score| of the sentence.
"""

from __future__ import annotations

import html
import math
from collections.abc import Collection, Sequence

TOWARDS = (214, 39, 40)  # red: the token pushes towards the class
AGAINST = (31, 119, 180)  # blue: the token pushes away from it


def _colour(score: float, scale: float) -> str:
    strength = 0.0 if scale <= 0 or not math.isfinite(score) else min(1.0, abs(score) / scale)
    r, g, b = TOWARDS if score >= 0 else AGAINST
    return f"rgba({r}, {g}, {b}, {0.85 * strength:.3f})"


UNKNOWN_MARK = "?"  # after a token the model does not know: it reads <unk> there, whatever was typed


def token_spans(tokens: Sequence[str], scores: Sequence[float], unknown: Collection[int] = ()) -> str:
    """One sentence as <span>s shaded by signed score, each token escaped, its score in the hover title. Tokens at
    the positions `unknown` (not in the vocabulary) are outlined with a dashed border and a small "?", and their
    title says the model read <unk> there."""
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    finite = [abs(s) for s in scores if math.isfinite(s)]
    scale = max(finite, default=0.0)
    spans = []
    for position, (token, score) in enumerate(zip(tokens, scores)):
        text = "white" if scale and abs(score) / scale > 0.6 else "inherit"
        title, mark, border = f"{score:+.4f}", "", "border:2px solid transparent"
        if position in unknown:
            title = f"{score:+.4f} · not in the vocabulary: the model read &lt;unk&gt; here"
            mark, border = f'<sup class="tl-unknown">{UNKNOWN_MARK}</sup>', "border:2px dashed currentColor"
        spans.append(f'<span class="tl-token" title="{title}" style="background:{_colour(score, scale)};'
                     f'color:{text};padding:0 4px;margin:1px;border-radius:4px;{border};display:inline-block">'
                     f"{html.escape(token, quote=True)}{mark}</span>")
    return '<div class="tl-tokens" style="line-height:2.1;font-size:1.05rem">' + " ".join(spans) + "</div>"


def colour_key(target: str) -> str:
    """The colour key under the sentences: blue (against) to red (towards `target`)."""
    name = html.escape(target, quote=True)
    steps = ", ".join(_colour(v, 1.0) for v in (-1.0, -0.5, 0.0, 0.5, 1.0))
    return ('<div class="tl-key" style="display:flex;align-items:center;gap:8px;font-size:0.85rem">'
            f"<span>against {name}</span>"
            f'<span style="width:160px;height:12px;border-radius:3px;background:linear-gradient(90deg, {steps})">'
            f"</span><span>towards {name}</span></div>")


def deletion_figure(curves: dict[str, tuple[list[float], list[float]]], random: tuple[list[float], list[float]],
                    target: str):
    """The deletion curves of one sentence: class probability as tokens become <unk>, one line per method, the
    random order dashed. Names go through plotly_text (Plotly reads a little HTML in legends)."""
    import plotly.graph_objects as go

    from app.charts.text import plotly_text

    figure = go.Figure()
    for name, (x, y) in curves.items():
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=plotly_text(name)))
    figure.add_trace(go.Scatter(x=random[0], y=random[1], mode="lines", name="random order",
                                line={"dash": "dash", "color": "grey"}))
    figure.update_layout(height=260, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         title={"text": plotly_text(f"deletion curve: probability of {target}"), "font": {"size": 13}},
                         xaxis_title=plotly_text("share of tokens replaced by <unk>"), yaxis={"title": "probability", "range": [0, 1]})
    return figure
