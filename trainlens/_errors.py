"""What the client raises: one line that says why and what to do (TrainLensError), and the cancel a user asked
for from TrainLens, raised in the script at its next `log` (RunCancelled)."""


class TrainLensError(RuntimeError):
    """A run cannot be started or written as asked; the message says why and what to do, in one line."""


class RunCancelled(Exception):
    """Raised in the script at its next `log` after the run was cancelled from the dashboard or the CLI."""
