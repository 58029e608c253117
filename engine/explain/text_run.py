"""A run's token attributions for a typed text: what `trainlens explain RUN --text "..."` prints.

Loads the run's checkpoint and its vocabulary (the run's own training split), tokenises the text the way
training did, and returns the prediction and one score per token as plain JSON-able values.
"""

from __future__ import annotations

from typing import Any

from engine.text.vocab import UNK_ID, tokenize

ALIASES = {"ig": "integrated_gradients", "ixg": "input_x_gradient", "shap": "shapley"}


def explain_text_run(run_id: str, text: str, method: str = "integrated_gradients", target: int | None = None,
                     which: str | int = "best") -> dict[str, Any]:
    """{"tokens", "scores", "unknown", "method", "target", "classes", "probabilities"} for `text`."""
    from engine.checkpoints import load_run_model
    from engine.data.loading import cached_run_split
    from engine.explain.methods import explain
    from engine.explain.text import predict_tokens

    method = ALIASES.get(method, method)
    model, config, info, _ = load_run_model(run_id, which)
    if info.kind == "chars":
        raise ValueError(f"run {run_id} writes characters ({config.dataset}): see what it writes with `trainlens "
                         "sample`; its context attributions are on the Explain page")
    if info.kind != "text":
        raise ValueError(f"run {run_id} trained on images ({config.dataset}); --text explains text runs")
    tokens = tokenize(text, config.text_level)
    if not tokens:
        raise ValueError("the text has no words to explain")
    vocab = cached_run_split(config, download=False).text.vocab
    ids = vocab.encode([tokens])
    probs = predict_tokens(model, ids)[0]
    target = int(probs.argmax()) if target is None else target
    if not 0 <= target < len(info.classes):
        raise ValueError(f"--target {target}: the run has classes 0..{len(info.classes) - 1}")
    scores = explain(model, ids, target, method)[0]
    return {"tokens": tokens, "scores": [float(s) for s in scores[:len(tokens)]], "method": method, "target": target,
            "unknown": [t for t, i in zip(tokens, ids[0].tolist()) if i == UNK_ID],
            "classes": list(info.classes), "probabilities": [float(p) for p in probs]}


def format_scores(result: dict[str, Any]) -> str:
    """The result as lines of 'token  score', after a line with the prediction."""
    classes, probs = result["classes"], result["probabilities"]
    lines = [f"explaining {classes[result['target']]} ({probs[result['target']]:.1%}) with {result['method']}"]
    width = max(len(t) for t in result["tokens"])
    lines += [f"{token:<{width}}  {score:+.4f}" for token, score in zip(result["tokens"], result["scores"])]
    return "\n".join(lines)
