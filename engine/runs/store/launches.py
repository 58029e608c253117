"""Lesson launches in the store: every run of one lesson launched at once, as one item for the class limits, and
the launches the teacher ran for the whole class.

A launch is a row of `launches` keyed by its group: its runs (and only they: `create_run` refuses a launch's group)
have that group. For a student it is one item for the running and queued caps, whatever its number of runs
(`units`): the optimizer race's 14 runs take one place in the queue, like one run, and its runs then train as
workers come free, in the owners' round-robin turns. Its size is bounded instead (engine.runs.access.check_lesson),
checked in the same transaction that queues every run of it, so a lesson is queued whole or not at all.

A launch `for_class` (teacher only) is the one set of runs every student's Lessons page shows by default, so thirty
students do not start thirty copies; the whole room watches it, so its runs are claimed before anyone's turn
(engine.runs.store.queue).
"""

from __future__ import annotations

import sqlite3
import time

import pandas as pd

from engine.classroom import Actor
from engine.config import RunConfig
from engine.records import RunKind, check_name
from engine.runs.access import CapReached, check_lesson, check_may_teach
from engine.runs.store.classes import class_limits, queued_of
from engine.runs.store.runs import check_new_run, insert_run, run_costs
from engine.runs.store.schema import StoreBase

LAUNCH_COLUMNS = ["group", "lesson", "owner", "owner_role", "owner_id", "for_class", "created_at", "runs"]


class LaunchesMixin(StoreBase):
    """Queueing a lesson whole, and reading back its launches."""

    def create_launch(self, lesson: str, configs: list[tuple[str, RunConfig]], group: str, *, owner: str = "",
                      actor: Actor | None = None, for_class: bool = False,
                      sources: dict[str, str] | None = None) -> tuple[str, list[str]]:
        """Queue every (name, config) of one launch of `lesson` in one transaction; returns (group, run ids).

        `group` is the launch's group; when a run already has it (two launches in the same second) a counter is
        added (`… #2`), and each config's group is set to the one used. A student's launch must fit the class limits
        (CapReached, nothing queued); only the teacher (or the local user) may launch `for_class`
        (PermissionDenied). `sources` maps a run's name to an earlier run of the launch it starts from (a lesson's
        pretraining): its init_from becomes that run's id, and it waits in the queue until that run has finished."""
        if for_class:
            check_may_teach(actor, "run a lesson for the whole class")
        check_name("lesson", lesson)
        if not configs:
            raise ValueError(f"lesson {lesson!r} has no runs")
        owners = [check_new_run(config, name, group, owner, actor) for name, config in configs]
        sources = sources or {}
        checked = [(name, config, who) for (name, config), who in zip(launch_transfers(self, configs, sources), owners)]
        costs = [(config, *run_costs(config, actor)) for _, config, _ in checked]  # before the write lock: torch
        with self._tx() as c:
            if actor is not None and actor.is_student:
                check_lesson(actor, class_limits(c), costs, queued_of(c, actor))
            group = _free_group(c, group)
            owner, owner_role, owner_id = checked[0][2]
            c.execute("INSERT INTO launches(grp, lesson, owner, owner_role, owner_id, for_class, created_at) "
                      "VALUES (?,?,?,?,?,?,?)", (group, lesson, owner, owner_role, owner_id, int(for_class), time.time()))
            ids: list[str] = []
            by_name: dict[str, str] = {}
            for name, config, _ in checked:
                source = f"{by_name[sources[name]]}:best" if name in sources else config.init_from
                ids.append(insert_run(c, config.with_updates(group=group, init_from=source), kind=RunKind.TRAIN,
                                      name=name, owner=owner, owner_role=owner_role, owner_id=owner_id, group=group,
                                      parent_id=None, actor=actor))
                by_name[name] = ids[-1]
        return group, ids

    def launch_refusal(self, configs: list[RunConfig], actor: Actor | None) -> str | None:
        """Why `actor` may not launch a lesson of these configs now (the class limits and their queue), in a
        sentence; None when they may. The same rule `create_launch` enforces, asked before a page offers it."""
        try:
            check_lesson(actor, class_limits(self.conn), [(cfg, *run_costs(cfg, actor)) for cfg in configs],
                         queued_of(self.conn, actor) if actor is not None and actor.is_student else 0)
        except CapReached as exc:
            return str(exc)
        return None

    def launches(self, lesson: str | None = None) -> pd.DataFrame:
        """Lesson launches that still have runs, newest first (LAUNCH_COLUMNS; `runs`: how many are left)."""
        query = ("SELECT l.grp, l.lesson, l.owner, l.owner_role, l.owner_id, l.for_class, l.created_at, "
                 "COUNT(r.run_id) AS runs "
                 "FROM launches l JOIN runs r ON r.grp = l.grp")
        args: tuple = ()
        if lesson is not None:
            query, args = query + " WHERE l.lesson=?", (lesson,)
        rows = [dict(r) for r in self.conn.execute(query + " GROUP BY l.grp ORDER BY l.created_at DESC, l.grp DESC",
                                                   args)]
        frame = pd.DataFrame(rows, columns=["grp", *LAUNCH_COLUMNS[1:]]).rename(columns={"grp": "group"})
        frame["for_class"] = frame["for_class"].astype(bool)
        return frame


def launch_transfers(store, configs: list[tuple[str, RunConfig]],
                     sources: dict[str, str]) -> list[tuple[str, RunConfig]]:
    """`configs` with their transfer fields checked as a single run's are (engine.runs.lineage.check_transfer: an
    init_from resolved) and `sources` checked: each names an earlier run of the launch whose model the run can start
    from, and run names are unique. ValueError (SourceRefused) in one line, before anything is queued."""
    from engine.runs.lineage import check_compatible, check_transfer

    names = [name for name, _ in configs]
    if sources and len(set(names)) != len(names):
        raise ValueError("a launch whose runs start from one another needs a name for each run")
    earlier: dict[str, RunConfig] = {}
    checked = []
    for name, config in configs:
        if name in sources:
            if sources[name] not in earlier or config.init_from:
                raise ValueError(f"run {name!r} starts from {sources[name]!r}, which is no earlier run of this launch")
            check_compatible(earlier[sources[name]], config, f"{sources[name]} (this launch's)")
        checked.append((name, check_transfer(store, config)))  # a freeze pattern, K per class, an init_from
        earlier[name] = config
    return checked


def _free_group(c: sqlite3.Connection, group: str) -> str:
    """`group`, or `group #2`, `#3`...: the first that no launch and no run has."""
    candidate, counter = group, 1
    while c.execute("SELECT 1 FROM launches WHERE grp=? UNION ALL SELECT 1 FROM runs WHERE grp=? LIMIT 1",
                    (candidate, candidate)).fetchone() is not None:
        counter += 1
        candidate = f"{group} #{counter}"
    return check_name("group", candidate)
