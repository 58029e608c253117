"""`trainlens.SummaryWriter`: a drop-in for `torch.utils.tensorboard.SummaryWriter`, so a script that logs to
TensorBoard trains live in the dashboard by changing one import.

- `add_scalar(tag, value, global_step, walltime)`: the tag becomes the metric key, `global_step` the step
  (omitted: the tag's next step, 0, 1, 2...), `walltime` the row's wall time. `add_scalars(main, {tag: v})` logs
  `main/tag` keys.
- `add_histogram`: a compact summary (bin edges and counts, at most MAX_BINS bins, min/max/mean) filed as an
  artifact of the run (`histogram/{step}/{tag}`), drawn on its Run report.
- `add_hparams(hparams, metrics)`: the hyperparameters join the run's config (groupable on Compare), the metrics
  are logged. `add_text`: filed as `text/{step}/{tag}`, listed on the Run report.
- `flush()` writes what is buffered; `close()` finishes the run (completed) unless the writer logs into a run
  `trainlens.init` started, which it then only flushes.
- Any other method (`add_image`, `add_graph`, `add_figure`...) is accepted and ignored with one warning per
  method name: never a crash. `log_dir`, `comment`, `purge_step`, `max_queue`, `flush_secs` and
  `filename_suffix` are accepted; no event file is written.

Each writer is its own run (named after its `log_dir`, e.g. `runs/mnist`), unless a run started with
`trainlens.init` is active in the process: then every writer logs into it, as W&B's TensorBoard sync does.
"""

from __future__ import annotations

import time
from typing import Any

from trainlens._values import warn

MAX_BINS = 64  # a histogram's summary: enough to see a distribution's shape, a few hundred bytes per call
MAX_TEXT = 100_000  # characters of one add_text


class SummaryWriter:
    """Logs to a TrainLens run with TensorBoard's SummaryWriter methods."""

    def __init__(self, log_dir: str | None = None, comment: str = "", purge_step: int | None = None,
                 max_queue: int = 10, flush_secs: int = 120, filename_suffix: str = "", **kwargs: Any):
        from trainlens._run import Run, current

        self.log_dir = str(log_dir) if log_dir is not None else None
        self.comment = comment
        self._warned: set[str] = set()
        self._next_step: dict[str, int] = {}
        if kwargs:
            warn(f"trainlens.SummaryWriter: {', '.join(sorted(kwargs))} ignored")
        active = current()
        self._owns_run = active is None
        self.run: Run = active if active is not None else Run(name=self._name(), cancellable=True)
        self.closed = False

    def _name(self) -> str | None:
        from engine.records import fit_name

        if self.log_dir:
            return fit_name(self.log_dir.rstrip("/\\") + self.comment) or None
        return None  # the store names it after the script (train.py -> "train")

    def get_logdir(self) -> str:
        """TensorBoard's folder for this writer: the `log_dir` given, else where TensorBoard would have put it
        (scripts save checkpoints there)."""
        if self.log_dir is None:
            import os
            import socket
            from datetime import datetime

            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            self.log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{self.comment}")
        return self.log_dir

    # ---- scalars ----
    def _step(self, tag: str, global_step: Any) -> int:
        if global_step is None:
            step = self._next_step.get(tag, 0)
        else:
            step = int(global_step)
        self._next_step[tag] = max(self._next_step.get(tag, 0), step + 1)
        return step

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None, walltime: float | None = None,
                   new_style: bool = False, double_precision: bool = False) -> None:
        self.run.log({tag: scalar_value}, step=self._step(tag, global_step), wall_time=walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict[str, Any], global_step: int | None = None,
                    walltime: float | None = None) -> None:
        step = self._step(main_tag, global_step)
        self.run.log({f"{main_tag}/{tag}": value for tag, value in tag_scalar_dict.items()}, step=step,
                     wall_time=walltime)

    # ---- what is not a scalar ----
    def add_histogram(self, tag: str, values: Any, global_step: int | None = None, bins: Any = "tensorflow",
                      walltime: float | None = None, max_bins: int | None = None) -> None:
        from engine.records import SCRIPT_HISTOGRAM_PREFIX, script_artifact

        step = self._step(f"histogram {tag}", global_step)
        summary = histogram_summary(values, bins, max_bins)
        if summary is None:
            return self._once(f"add_histogram {tag}", f"trainlens: add_histogram({tag!r}) got no numbers; skipped")
        key = self.run._cleaner.key(tag)[0]
        summary.update(tag=key, step=step, wall_time=walltime if walltime is not None else time.time())
        self.run.put_artifact(script_artifact(SCRIPT_HISTOGRAM_PREFIX, step, key), summary)

    def add_text(self, tag: str, text_string: str, global_step: int | None = None,
                 walltime: float | None = None) -> None:
        from engine.records import SCRIPT_TEXT_PREFIX, script_artifact

        step = self._step(f"text {tag}", global_step)
        text = str(text_string)
        if len(text) > MAX_TEXT:
            self._once(f"add_text {tag}", f"trainlens: add_text({tag!r}) is {len(text):,} characters; stored cut to "
                                          f"{MAX_TEXT:,}")
            text = text[:MAX_TEXT]
        key = self.run._cleaner.key(tag)[0]
        self.run.put_artifact(script_artifact(SCRIPT_TEXT_PREFIX, step, key),
                              {"tag": key, "step": step, "text": text,
                               "wall_time": walltime if walltime is not None else time.time()})

    def add_hparams(self, hparam_dict: dict[str, Any], metric_dict: dict[str, Any],
                    hparam_domain_discrete: dict | None = None, run_name: str | None = None,
                    global_step: int | None = None) -> None:
        self.run.update_config(dict(hparam_dict))
        if metric_dict:
            step = int(global_step) if global_step is not None else self.run._last_step
            self.run.log(dict(metric_dict), step=step)

    # ---- the writer's life ----
    def flush(self) -> None:
        self.run.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._owns_run:
            self.run.finish()
        else:
            self.run.flush()

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and self._owns_run:
            self.closed = True
            self.run.fail(exc)
        else:
            self.close()
        return False

    def _once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warn(message)

    def __getattr__(self, name: str):
        """TensorBoard's other methods (add_image, add_graph, add_figure, add_pr_curve...): accepted, ignored, one
        warning per method name."""
        if name.startswith("_"):
            raise AttributeError(name)

        def ignored(*args: Any, **kwargs: Any) -> None:
            self._once(name, f"trainlens.SummaryWriter.{name} is not supported yet: ignored (scalars, histograms, "
                             "hparams and text are logged)")

        return ignored


def histogram_summary(values: Any, bins: Any = "tensorflow", max_bins: int | None = None) -> dict[str, Any] | None:
    """Bin edges and counts of `values` (a tensor, an array, a list), with the count, min, max, mean and how many
    were not finite; None when there is no finite number in it."""
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor: no torch import needed to read it
        values = values.detach().cpu().float().numpy()
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return None
    limit = min(MAX_BINS, int(max_bins) if max_bins else MAX_BINS)
    if isinstance(bins, int):
        count = max(1, min(limit, bins))
    elif isinstance(bins, str) and bins != "tensorflow":
        try:
            count = max(1, min(limit, len(np.histogram_bin_edges(finite, bins=bins)) - 1))
        except ValueError:
            count = 30
    else:
        count = min(limit, 30)
    counts, edges = np.histogram(finite, bins=count)
    return {"edges": edges.tolist(), "counts": counts.astype(int).tolist(), "num": int(array.size),
            "min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean()),
            "non_finite": int(array.size - finite.size)}
