"""A character run's checkpoint as a writer: its model and vocabulary, and samples from it at any temperature and
prefix. What `trainlens sample`, the Train page's sampler, the Run report and the Explain page's characters
section share. A run that is no character run (a classifier, a script) is refused with one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from engine.chars.data import CharExtras
from engine.config import RunConfig
from engine.datasets import DATASETS


@dataclass
class CharModel:
    model: nn.Module  # in eval mode
    config: RunConfig
    extras: CharExtras  # vocabulary, documents, baselines
    epoch: int  # the checkpoint's engine epoch (-1: before training)


def check_char_config(config: RunConfig | None, run_id: str) -> None:
    """ValueError with one line unless `config` is a character run's."""
    if config is None or not isinstance(config, RunConfig):
        raise ValueError(f"run {run_id} was trained by its own script: only a character-level TrainLens run "
                         "(names, reviews, text_file) writes samples")
    if DATASETS[config.dataset].kind != "chars":
        raise ValueError(f"run {run_id} classifies {config.dataset}: only a character-level run (names, reviews, "
                         "text_file) writes samples")


def load_char_model(run_id: str, which: str | int = "best", device: str = "cpu") -> CharModel:
    """The run's model from a checkpoint ('best', 'last' or an epoch) and its vocabulary (the run's own split)."""
    from engine.checkpoints import load_checkpoint, load_run_model, resolve
    from engine.data.loading import cached_run_split

    check_char_config(load_checkpoint(resolve(run_id, which)).config, run_id)
    model, config, _, ckpt = load_run_model(run_id, which, device=device)
    return CharModel(model, config, cached_run_split(config, download=False).chars, ckpt.epoch)


def write(loaded: CharModel, n: int = 20, temperature: float = 0.8, prefix: str = "", seed: int = 0) -> dict:
    """{"samples", "temperature", "prefix", "seed", "epoch", "new", "real"}: `n` samples of the loaded model."""
    from engine.chars.sampling import sample, score_samples

    samples = sample(loaded.model, loaded.extras.vocab, n, temperature=temperature, prefix=prefix,
                     max_chars=max(loaded.extras.max_chars, len(prefix) + 1), seed=seed)
    return {"samples": samples, "temperature": float(temperature), "prefix": prefix, "seed": seed,
            "epoch": loaded.epoch, **score_samples(samples, loaded.extras)}
