"""The run store: one SQLite file (WAL, busy timeout) holding runs, the queue, class settings and members,
metrics, checkpoints, artifacts and workers. `Store` is its one face; `from engine.runs.store import Store`.

The store is the source of truth shared by the dashboard, the CLI and the workers (or the Ray dispatcher, the one
writer for its cluster's runs). Workers write metrics in batched transactions under their run's lease; the app
reads, and writes only intents (enqueue, cancel, resume, class settings). Runs leave it as `RunRecord`s (typed dicts,
engine.records), listings and metric rows as pandas DataFrames. Nothing outside this package runs SQL on the file
or its connection: a new question is a new method here (tests/test_store_layout.py checks).

One module per concern, each a mixin over the shared connection and transaction of `schema.StoreBase`:

- `schema`: the schema and its version, creating, migrating and backing up the file, connections, transactions
- `runs`: creating, reading, listing and naming runs, what their worker reports; leases (fencing) and quarantine
- `queue`: claiming the next run in turn (owners round-robin), queue places, why a run waits
- `classes`: the teacher's settings and limits
- `members`: the class's members (stable ids that own runs), their seats, requests to rejoin
- `migrations`: moving an older store's class members to ids (schema 3 -> 4)
- `launches`: a lesson queued whole, one item for the class limits; lessons the teacher ran for the class
- `control`: cancel, resume, delete, under the access rules (engine.runs.access)
- `metrics`: metric rows, written in batches and read bounded
- `artifacts`: checkpoint records and JSON artifacts
- `workers`: registration, heartbeats, live workers, reaping the dead ones
- `scripts`: runs a user's own script trains through the `trainlens` client: created running, heartbeats, finished
- `errors`: what can go wrong with the file, in a sentence a user can act on, and waiting out a busy store

Each fault the store survives is described, with its concern, in that module's docstring (and each has a test).
"""

from __future__ import annotations

from engine.runs.store.artifacts import ArtifactsMixin
from engine.runs.store.classes import ClassesMixin
from engine.runs.store.control import ControlMixin
from engine.runs.store.errors import (BACKUPS_DIR, StoreUnavailable, damaged, describe, is_locked, newest_backup,
                                      retry_locked)
from engine.runs.store.launches import LaunchesMixin
from engine.runs.store.members import Joined, MembersMixin, NameTaken, WrongCode
from engine.runs.store.metrics import METRIC_COLUMNS, MetricsMixin
from engine.runs.store.queue import QueueMixin
from engine.runs.store.runs import ETA_AFTER_S, RUN_COLUMNS, Fence, LeaseLost, RunsMixin, UnreadableRun, default_name
from engine.runs.store.schema import SCHEMA_VERSION
from engine.runs.store.scripts import SCRIPT_STALE_AFTER_S, ScriptsMixin, script_pulse_id
from engine.runs.store.workers import WorkersMixin


class Store(RunsMixin, QueueMixin, ClassesMixin, MembersMixin, LaunchesMixin, ControlMixin, MetricsMixin,
            ArtifactsMixin, WorkersMixin, ScriptsMixin):
    """The run store at `path` (default: TRAINLENS_HOME/trainlens.db), created or migrated when opened."""


__all__ = ["BACKUPS_DIR", "ETA_AFTER_S", "METRIC_COLUMNS", "RUN_COLUMNS", "SCHEMA_VERSION", "SCRIPT_STALE_AFTER_S",
           "Fence", "Joined", "LeaseLost", "NameTaken", "Store", "StoreUnavailable", "UnreadableRun", "WrongCode",
           "damaged", "default_name", "describe", "is_locked", "newest_backup", "retry_locked", "script_pulse_id"]
