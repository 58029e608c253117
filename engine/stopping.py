"""Early stopping: watch one validation metric and say when it has stopped improving.

Torch-free. The training loop updates it once per epoch and keeps its `state()` in every checkpoint, so a resumed
run remembers its best epoch and how many epochs it has waited.
"""

from __future__ import annotations


class EarlyStopping:
    """Watch one validation metric; stop after `patience` epochs without an improvement of `min_delta`."""

    def __init__(self, metric: str, patience: int, min_delta: float, state: dict | None = None):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.higher_is_better = metric.endswith("acc")
        state = state or {}
        self.best: float | None = state.get("best")
        self.best_epoch: int | None = state.get("best_epoch")
        self.bad_epochs: int = state.get("bad_epochs", 0)

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch's value; True when it is the new best."""
        if self.best is None:
            improved = True
        elif self.higher_is_better:
            improved = value > self.best + self.min_delta
        else:
            improved = value < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}
