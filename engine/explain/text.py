"""Token attributions: how much each token of a sentence pushed a text model towards a class.

`explain_tokens(model, ids, target, method, **params)` takes token ids [B, L] (or one sentence [L]) and
returns float32 attributions of the same shape, one number per token (0 on padding). `engine.explain.methods.
explain` hands integer inputs here, so the one `explain()` call serves images and text alike. A method that
cannot apply raises `NotApplicable` with the reason; `why_not_text` asks without computing.

The gradient methods work on the embedding layer (`model.embedding`), since token ids cannot be
differentiated: each token's score is its embedding's attribution summed over the embedding dimensions
(Saliency: the gradient's L2 norm). The reference for Integrated Gradients and DeepLIFT is the `<pad>`
embedding (a zero vector) at every position of the same sentence length, so Integrated Gradients' scores add up
to f(sentence) - f(all-zero embeddings). The perturbation methods replace tokens with `<unk>` (or `<pad>`
inside the sentence, which the models read as a zero vector): the drop in the class score is the token's score.

Quality against the ground truth (`sentiment` marks the deciding tokens): `token_agreement` (precision of the
top-k tokens with k = number of deciding tokens, the pointing game: is the top token a deciding one, and
whether one of the top 2 is) and `token_deletion_curve` (the class probability as tokens are replaced by
`<unk>`, most important first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import (
    FeatureAblation,
    LayerDeepLift,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    ShapleyValueSampling,
)
from torch import Tensor, nn

import warnings

from engine.explain.methods import NotApplicable, _eval_mode, _model_lock, _rnn_backward_ok, _seeded
from engine.text.vocab import PAD_ID, UNK_ID


@dataclass(frozen=True)
class TokenMethod:
    name: str  # the same keys as engine.explain.methods.METHODS where the idea is the same
    title: str
    summary: str
    run: Callable[..., Tensor]  # (model, ids, target, params) -> [B, L]
    defaults: dict[str, Any] = field(default_factory=dict)
    default_sign: str = "all"
    heavy: bool = False


def _layer(model: nn.Module) -> nn.Module:
    return model.embedding


def _replacement(p: dict[str, Any]) -> int:
    if p["baseline"] not in ("unk", "pad"):
        raise ValueError(f"baseline={p['baseline']!r}: 'unk' or 'pad'")
    return UNK_ID if p["baseline"] == "unk" else PAD_ID


def _saliency(model, ids, target, p):
    grads = LayerGradientXActivation(model, _layer(model), multiply_by_inputs=False).attribute(ids, target=target)
    return grads.norm(dim=-1)


def _input_x_gradient(model, ids, target, p):
    return LayerGradientXActivation(model, _layer(model)).attribute(ids, target=target).sum(-1)


def _integrated_gradients(model, ids, target, p):
    # baseline ids of <pad> embed to zero vectors; the forward still reads the real sentence's length
    return LayerIntegratedGradients(model, _layer(model)).attribute(
        ids, baselines=torch.full_like(ids, PAD_ID), target=target, n_steps=p["n_steps"]).sum(-1)


def _deeplift(model, ids, target, p):
    return LayerDeepLift(model, _layer(model)).attribute(ids, baselines=torch.full_like(ids, PAD_ID),
                                                         target=target).sum(-1)


def _real(ids: Tensor) -> Tensor:
    return ids != PAD_ID


def _occlusion(model, ids, target, p):
    """Slide a window of `window` tokens over the sentence, replacing them; each token gets the mean drop of
    the windows that cover it (window 1 = per-token feature ablation)."""
    width, replace = max(1, int(p["window"])), _replacement(p)
    out = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    with torch.no_grad():
        base = _score(model, ids, target)
        for row in range(ids.shape[0]):
            n = int(_real(ids[row]).sum())
            starts = range(max(1, n - width + 1))
            variants = ids[row].repeat(len(starts), 1)
            for k, start in enumerate(starts):
                variants[k, start:min(n, start + width)] = replace
            row_target = _row_target(target, row)
            drops = base[row] - _score(model, variants, row_target)
            cover = torch.zeros(ids.shape[1], device=ids.device)
            for k, start in enumerate(starts):
                out[row, start:min(n, start + width)] += drops[k]
                cover[start:min(n, start + width)] += 1
            out[row] /= cover.clamp_min(1)
    return out


def _feature_ablation(model, ids, target, p):
    return FeatureAblation(model).attribute(ids, baselines=_replacement(p), target=target,
                                            feature_mask=_token_mask(ids)).float()


def _shapley(model, ids, target, p):
    with warnings.catch_warnings():
        # padding forms one feature group numbered after the last position, so the feature numbers have gaps on
        # short sentences: harmless (the group is masked out of the result), but Captum warns on every call
        warnings.filterwarnings("ignore", message=r"Feature mask is missing some integers", category=UserWarning)
        return ShapleyValueSampling(model).attribute(ids, baselines=_replacement(p), target=target,
                                                     n_samples=p["samples"], feature_mask=_token_mask(ids)).float()


def _token_mask(ids: Tensor) -> Tensor:
    """One feature per real token; all padding in one group of its own that Captum also ablates (harmlessly:
    <unk> after the sentence's end is read as a token, so pad positions are masked out of the result)."""
    positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    return torch.where(_real(ids), positions, torch.full_like(ids, ids.shape[1]))


def _row_target(target, row: int):
    if isinstance(target, Tensor):
        return int(target.view(-1)[row if target.numel() > 1 else 0])
    if isinstance(target, (list, tuple)):
        return int(target[row])
    return int(target)


def _score(model: nn.Module, ids: Tensor, target) -> Tensor:
    logits = model(ids)
    if isinstance(target, int):
        return logits[:, target]
    index = torch.as_tensor(target, device=logits.device).view(-1, 1)
    return logits.gather(1, index.expand(len(logits), 1)).squeeze(1)


_UNK = {"baseline": "unk"}

TOKEN_METHODS: dict[str, TokenMethod] = {m.name: m for m in [
    TokenMethod("integrated_gradients", "Integrated Gradients",
                "Embedding gradients along the path from <pad> vectors; the scores add up to f(x) - f(<pad>s).",
                _integrated_gradients, {"n_steps": 50}, heavy=True),
    TokenMethod("saliency", "Saliency", "Size of the gradient at each token's embedding.", _saliency,
                default_sign="absolute"),
    TokenMethod("input_x_gradient", "Input × Gradient", "Embedding times its gradient, summed per token.",
                _input_x_gradient),
    TokenMethod("deeplift", "DeepLIFT", "Difference from <pad> embeddings propagated with the rescale rule.",
                _deeplift),
    TokenMethod("occlusion", "Occlusion", "Drop in the class score when a window of tokens is replaced by <unk>.",
                _occlusion, {**_UNK, "window": 1}),
    TokenMethod("feature_ablation", "Feature ablation", "Drop in the class score when one token is replaced.",
                _feature_ablation, dict(_UNK)),
    TokenMethod("shapley", "Shapley value sampling",
                "Average drop over random orders of replacing tokens: sampled Shapley values.",
                _shapley, {**_UNK, "samples": 25, "seed": 0}, heavy=True),
]}


def why_not_text(model: nn.Module, method: str) -> str | None:
    """None when `method` can explain this text model, else the reason in one sentence."""
    if method not in TOKEN_METHODS:
        from engine.explain.methods import METHODS

        if method in METHODS:
            return (f"{METHODS[method].title} does not apply to text: it needs an image (a spatial map or pixel "
                    f"noise). Token methods: {', '.join(TOKEN_METHODS)}.")
        raise ValueError(f"method={method!r}: token methods are {', '.join(TOKEN_METHODS)}")
    if not isinstance(getattr(model, "embedding", None), nn.Embedding):
        return "token attributions need a text model (one with an `embedding` layer)"
    if method == "deeplift" and any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return ("DeepLIFT does not apply to recurrent models: Captum's rescale rules do not cover RNN/GRU/LSTM "
                "cells. Try Integrated Gradients, its closest relative.")
    return None


def explain_tokens(model: nn.Module, ids: Tensor, target, method: str, **params: Any) -> Tensor:
    """Attributions [B, L] (or [L] for one sentence) of `method` for `target`; 0 on padding."""
    reason = why_not_text(model, method)
    if reason:
        raise NotApplicable(reason)
    spec = TOKEN_METHODS[method]
    unknown = sorted(set(params) - set(spec.defaults) - {"device", "progress"})
    if unknown:
        raise ValueError(f"{method} has no parameter {', '.join(unknown)}; its parameters: "
                         f"{', '.join(spec.defaults) or 'none'}")
    p = {**spec.defaults, **{k: v for k, v in params.items() if k in spec.defaults}}
    single = ids.dim() == 1
    batch = (ids.unsqueeze(0) if single else ids).long()
    device = next(model.parameters()).device
    batch = batch.to(device)
    with _model_lock(model), _eval_mode(model), _rnn_backward_ok(model, device), _seeded(p.get("seed"), device):
        result = spec.run(model, batch, target, p)
    result = (result.detach().float() * _real(batch)).to(ids.device)
    return result[0] if single else result


@torch.no_grad()
def predict_tokens(model: nn.Module, ids: Tensor) -> Tensor:
    """Class probabilities [B, classes] for ids [B, L] (or [L])."""
    batch = ids.unsqueeze(0) if ids.dim() == 1 else ids
    with _model_lock(model), _eval_mode(model):
        return torch.softmax(model(batch.to(next(model.parameters()).device)), 1).cpu()


# ---- quality against the ground truth -----------------------------------------------------------------


@dataclass(frozen=True)
class TokenAgreement:
    precision_at_k: float  # share of the top-k tokens (by |score|) that decide the label, k = deciding tokens
    pointing: float  # 1 when the top token decides the label (the pointing game)
    top2_hit: float  # 1 when one of the top 2 tokens decides the label


def token_agreement(scores: Sequence[float] | Tensor, relevant: Sequence[bool]) -> TokenAgreement:
    """How well one sentence's token scores find its deciding tokens (ranked by absolute score)."""
    values = torch.as_tensor(scores, dtype=torch.float32)[:len(relevant)].abs()
    truth = torch.as_tensor(relevant, dtype=torch.bool)
    k = int(truth.sum())
    if k == 0:
        raise ValueError("the sentence has no deciding token to agree with")
    order = torch.argsort(values, descending=True, stable=True)
    return TokenAgreement(precision_at_k=truth[order[:k]].float().mean().item(), pointing=float(truth[order[0]]),
                          top2_hit=float(truth[order[:2]].any()))


def mean_agreement(items: Sequence[TokenAgreement]) -> TokenAgreement:
    return TokenAgreement(*(float(np.mean([getattr(a, f) for a in items])) for f in
                            ("precision_at_k", "pointing", "top2_hit")))


@dataclass(frozen=True)
class TokenDeletion:
    fractions: list[float]  # share of the sentence's tokens replaced, 0..1
    probabilities: list[float]  # target probability after replacing that many (most important first)
    random: list[float]  # the same with tokens replaced in a random order: the curve to beat
    area: float  # mean of `probabilities`: lower means the scores found the tokens the model needs
    random_area: float


@torch.no_grad()
def token_deletion_curve(model: nn.Module, ids: Tensor, scores: Tensor, target: int, *, seed: int = 0) -> TokenDeletion:
    """Replace one sentence's tokens by <unk>, highest score first, and watch the target probability fall."""
    ids = ids.view(-1)
    n = int(_real(ids).sum())
    order = torch.argsort(scores.view(-1)[:n], descending=True, stable=True)
    shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(seed))

    def curve(ranking: Tensor) -> list[float]:
        variants = ids[:n].repeat(n + 1, 1)
        for k in range(1, n + 1):
            variants[k, ranking[:k]] = UNK_ID
        return predict_tokens(model, variants)[:, target].tolist()

    guided, random = curve(order), curve(shuffled)
    return TokenDeletion([k / n for k in range(n + 1)], guided, random, float(np.mean(guided)), float(np.mean(random)))
