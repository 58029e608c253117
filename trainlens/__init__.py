"""TrainLens for your own training script: one import line, and it trains live in the dashboard.

    import trainlens

    run = trainlens.init(name="my-run", config={"lr": 0.01, "batch_size": 64}, group="homework-3")
    for step in range(1000):
        ...
        run.log({"loss": loss.item(), "val_acc": acc}, step=step)   # or trainlens.log(...)
    run.finish()                                                      # or: with trainlens.init(...) as run:

or, for a script that logs to TensorBoard, change one import:

    from trainlens import SummaryWriter   # instead of: from torch.utils.tensorboard import SummaryWriter

The run is written to the store the CLI and the dashboard read (`TRAINLENS_HOME`, else `./.trainlens`): start
`streamlit run app/main.py` in the same folder and watch it on Runs, Compare and its Run report. Tags named like
TrainLens's own keys (`loss`, `val_acc`, `train_loss`, `val_loss`, `lr`) share the default charts with the
engine's runs; any other key is under Compare's "More metrics".

Importing this package costs only the standard library: the store (pandas) is imported by `init`, torch only by
`log_model` and SummaryWriter's histograms. The engine never imports this package (tests/test_engine_import.py).
"""

from trainlens._errors import RunCancelled, TrainLensError
from trainlens._run import Run, current, finish, init, log
from trainlens._values import KEY_MAX, TrainLensWarning
from trainlens._writer import SummaryWriter

__all__ = ["KEY_MAX", "Run", "RunCancelled", "SummaryWriter", "TrainLensError", "TrainLensWarning", "current",
           "finish", "init", "log"]
