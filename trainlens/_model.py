"""`run.log_model(model)`: hand a script's model to the Explain page (engine.explain.logged_model saves it).

TrainLens zoo models (engine.models) are saved as an engine checkpoint of the run (`dataset=` says which data
they learned, and any RunConfig field they were built with); torchvision classifiers as safetensors weights with
their architecture, input size, normalisation and class names. Weights are never pickled. Any other model gets
one line pointing to `trainlens explain-model`. Imports torch: only when called.
"""

from __future__ import annotations

from typing import Any


def log_model(run, model, **what: Any) -> str:
    """Save `model` for Explain under `run`; returns where the weights are. TrainLensError says what to do for a
    model Explain cannot rebuild."""
    from engine.explain.logged_model import LogModelError, save_logged_model
    from engine.records import LOGGED_MODEL
    from trainlens._errors import TrainLensError

    run.flush()  # the curves up to the model first
    try:
        record = save_logged_model(run.run_id, model, step=what.pop("step", run._last_step), **what)
    except LogModelError as exc:
        raise TrainLensError(str(exc)) from None
    run.store.put_artifact(run.run_id, LOGGED_MODEL, record)
    return record["path"]
