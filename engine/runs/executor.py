"""Which executor trains the queued runs: `local` (warm worker processes, the default) or `ray` (a Ray cluster).

Chosen by configuration, never by the caller: the dashboard, the CLI and the store are the same for both. The
runner asks this module which process to keep alive on this host:

- local: `TRAINLENS_WORKERS` warm workers (`python -m engine.runs.worker`), by default one per GPU times
  `TRAINLENS_WORKERS_PER_GPU` (so one large GPU serves several small runs), else 2 on CPU.
- ray:   one dispatcher (`python -m engine.runs.ray_dispatch`) that claims queued runs and trains each in a Ray
  task on the cluster at `TRAINLENS_RAY_ADDRESS` (`auto`, `host:port` or `ray://host:10001`); everything the
  task reports comes back to the dispatcher, the store's one writer on this host.

Torch-free and Ray-free: `Runner.cancel` and the pages import it without paying for either.
"""

from __future__ import annotations

from engine import settings


class RayUnavailable(RuntimeError):
    """TRAINLENS_EXECUTOR=ray on a machine where Ray is not installed."""


def executor_name() -> str:
    """`TRAINLENS_EXECUTOR` (default local); SettingError (a ValueError) naming the allowed values otherwise."""
    return settings.value("TRAINLENS_EXECUTOR")


def ray_address() -> str:
    """Where the Ray cluster is: `auto` (a head started with `ray start --head` on this machine), `host:port`
    of a head's GCS, or `ray://host:10001` (Ray Client, for a head this machine cannot join)."""
    return settings.value("TRAINLENS_RAY_ADDRESS")


def ray_retries() -> int:
    """How many times a run whose Ray worker or node died is resumed from its last checkpoint before it stays
    `interrupted` (`TRAINLENS_RAY_RETRIES`, default 1; 0 = never)."""
    return settings.value("TRAINLENS_RAY_RETRIES")


def workers_per_gpu() -> int:
    """Local warm workers per GPU (`TRAINLENS_WORKERS_PER_GPU`, default 1): several small runs share one GPU."""
    return settings.value("TRAINLENS_WORKERS_PER_GPU")


def require_ray():
    """Import Ray, or RayUnavailable with what to do (Ray is optional: only the ray executor needs it)."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable("TRAINLENS_EXECUTOR=ray needs Ray, which is not installed here: `pip install "
                             "\"ray[default]\"` (the version in requirements-dev.txt is the one tested), or unset "
                             "TRAINLENS_EXECUTOR to train in local worker processes") from None
    return ray


def worker_module() -> str:
    """The module the runner starts on this host for the configured executor."""
    return "engine.runs.ray_dispatch" if executor_name() == "ray" else "engine.runs.worker"


def local_pool_size(gpus: int) -> int:
    """The local pool's default size: one worker per GPU times workers_per_gpu, else 2 (see engine.runs.runner)."""
    return gpus * workers_per_gpu() if gpus else 2
