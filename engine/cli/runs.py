"""The run commands: train (and wait with a progress bar), runs, show, metrics, cancel, resume, workers."""

from __future__ import annotations

import json
import math
import sys
import time

from engine.cli.common import UsageError, json_default, open_store, prog, resolve
from engine.cli.tables import metrics_summary
from engine.config import RunConfig, parse_assignment
from engine.records import ACTIVE, FINAL_KEYS, LAYER_STAT_SEPARATOR, SUCCEEDED, TERMINAL, RunStatus, report_artifact

MAX_CONFIG_BYTES = 100_000


def register(sub) -> dict:
    """Add the run commands' parsers to `sub`; their functions by command name."""
    train = sub.add_parser("train", help="queue a training run and print its run id")
    train.add_argument("--config", help="TOML file with RunConfig fields (flat, or under a [run] table)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config field")
    train.add_argument("--name", help="display name of the run")
    train.add_argument("--group", help="group (race) name")
    train.add_argument("--wait", action="store_true", help="show progress and exit 0 when the run completes")

    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="config, status, final metrics and classification report of a run")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")

    metrics = sub.add_parser("metrics", help="a summary of a run's metrics per key (every row with --csv/--json)")
    metrics.add_argument("run_id")
    fmt = metrics.add_mutually_exclusive_group()
    fmt.add_argument("--all", action="store_true", help="one summary line per layer for per-layer statistics")
    fmt.add_argument("--json", action="store_true", help="every logged row")
    fmt.add_argument("--csv", action="store_true", help="every logged row")

    for name, text in (("cancel", "cancel a queued or running run"), ("resume", "resume a run from its last checkpoint")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("run_id")
    return {"train": cmd_train, "runs": cmd_runs, "show": cmd_show, "metrics": cmd_metrics, "cancel": cmd_cancel,
            "resume": cmd_resume}


def register_workers(sub) -> dict:
    workers = sub.add_parser("workers", help="list worker processes (and why they cannot start, when they cannot)")
    action = workers.add_mutually_exclusive_group()
    action.add_argument("--stop", action="store_true", help="stop all workers on this host")
    action.add_argument("--start", action="store_true",
                        help="start the workers now, after fixing what stopped them from starting")
    return {"workers": cmd_workers}


def cmd_train(args) -> int:
    data: dict = {}
    if args.config:
        from engine.files import UnreadableFile, read_small_file

        try:  # a regular file of at most MAX_CONFIG_BYTES (a run's config is a few hundred), read without blocking
            text = read_small_file(args.config, MAX_CONFIG_BYTES, "a run's config").decode("utf-8")
        except UnreadableFile as exc:
            raise UsageError(f"--config {args.config}: {str(exc).split(': ', 1)[1]}") from None
        except UnicodeDecodeError:
            raise UsageError(f"--config {args.config}: not UTF-8 text") from None
        data = RunConfig.from_toml(text).to_dict()
    for assignment in args.set:
        key, value = parse_assignment(assignment)
        data[key] = value
    config = RunConfig.from_dict({**RunConfig().to_dict(), **data})

    from engine.runs.runner import Runner

    runner = Runner()
    handle = runner.submit(config, name=args.name, group=args.group)
    print(handle.run_id, flush=True)
    if not args.wait:
        problem = runner.pool_problem()
        if problem is not None:  # queued all the same: it starts once workers can
            print(f"warning: run {handle.run_id} is queued, but {problem.describe()}", file=sys.stderr)
        return 0
    status = _wait_with_progress(runner.store, handle)
    if status == RunStatus.QUEUED:  # no worker can start: said by _wait_with_progress
        return 1
    run = runner.store.get_run(handle.run_id)
    final = runner.store.last_values(handle.run_id)
    if "val_acc" in final:
        print(f"{status}: val_acc={final['val_acc']:.4f} val_loss={final['val_loss']:.4f}", file=sys.stderr)
    if run and run["error"]:
        print(f"{status}: {run['error']}", file=sys.stderr)
    return 0 if status in SUCCEEDED else 1


def _wait_with_progress(store, handle) -> str:
    """Progress bar until the run ends; returns its final status, or `queued` when no worker can start to take it
    (the reason is printed: waiting would be for ever)."""
    from tqdm import tqdm

    from engine.runs.runner import Runner

    runner = Runner(store)
    bar = tqdm(total=1, unit="step", file=sys.stderr, dynamic_ncols=True, desc="queued")
    last_check = time.time()
    try:
        while True:
            if time.time() - last_check > 3.0:  # a killed worker: mark its run, keep the pool alive
                last_check = time.time()
                runner.recover()
            run = store.get_run(handle.run_id)
            if run["status"] == RunStatus.QUEUED:
                problem = runner.pool_problem()
                if problem is not None:
                    bar.close()
                    print(f"error: run {handle.run_id} cannot start: {problem.describe()}. It stays queued "
                          f"(`{prog()} cancel {handle.run_id}` drops it)", file=sys.stderr)
                    return RunStatus.QUEUED
            if run["total_steps"]:
                bar.total = run["total_steps"]
                bar.n = run["step"]
                bar.set_description(f"{run['status']} epoch {run['epoch'] + 1}/{run['config'].epochs}")
                bar.refresh()
            if run["status"] not in ACTIVE:
                return run["status"]
            time.sleep(0.3)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; run {handle.run_id} continues (cancel it with `{prog()} cancel`)", file=sys.stderr)
        raise
    finally:
        bar.close()


def cmd_runs(args) -> int:
    frame = open_store().list_runs()
    columns = ["run_id", "name", "group", "status", "progress", "eta_s", "device", "created_at"]
    if args.json:
        print(frame[columns].to_json(orient="records"))
        return 0
    if frame.empty:
        print(f"no runs yet: start one with `{prog()} train --wait`")
        return 0
    for row in frame.itertuples():
        eta = f" eta {row.eta_s:.0f}s" if row.eta_s is not None and not math.isnan(row.eta_s) else ""
        print(f"{row.run_id}  {row.status:<13} {row.progress:6.1%}{eta}  {row.name}" + (f"  [{row.group}]" if row.group else ""))
    return 0


def cmd_show(args) -> int:
    store = open_store()
    run_id = resolve(store, args.run_id)
    run = store.get_run(run_id)
    final = store.last_values(run_id)
    report = store.get_artifact(run_id, report_artifact("best")) or store.get_artifact(run_id, report_artifact("last"))
    waiting = store.waiting_reason(run) if run["status"] == RunStatus.QUEUED else None  # e.g. no worker can start
    summary = {"run_id": run_id, "name": run["name"], "group": run["group"], "status": run["status"],
               "error": run["error"], "waiting": waiting, "device": run["device"], "step": run["step"], "total_steps": run["total_steps"],
               "config": run["config"].to_dict(), "final_metrics": final, "report": report}
    if args.json:
        print(json.dumps(summary, default=json_default))
        return 0
    print(f"{run['name']} ({run_id}): {run['status']}" + (f" - {run['error']}" if run["error"] else ""))
    if waiting:
        print(f"waiting: {waiting}")
    print(f"steps {run['step']}/{run['total_steps']} on {run['device'] or '-'}")
    print("config: " + " ".join(f"{k}={v}" for k, v in run["config"].to_dict().items() if v != getattr(RunConfig(), k)))
    for key in FINAL_KEYS:
        if key in final:
            print(f"  {key:<14} {final[key]:.4f}")
    if report and report.get("report_text"):
        print("\nclassification report (validation set):\n" + report["report_text"])
    return 0


def cmd_metrics(args) -> int:
    store = open_store()
    run_id = resolve(store, args.run_id)
    frame = store.get_metrics(run_id).drop(columns=["id"])
    if args.csv:
        print(frame.to_csv(index=False), end="")
    elif args.json:
        # not frame.to_json: it rounds values to 10 digits; a non-finite value (a diverged loss) becomes null
        records = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
                   for row in frame.to_dict(orient="records")]
        print(json.dumps(records))
    elif frame.empty:
        print(f"{run_id}: no metrics logged yet")
    else:
        print(f"{run_id}: {len(frame)} metric rows, {frame['key'].nunique()} keys")
        print("\n".join(metrics_summary(frame, every_layer=args.all)))
        hint = "every row: --csv or --json"
        if not args.all and frame["key"].str.contains(LAYER_STAT_SEPARATOR, regex=False).any():
            hint = "per-layer statistics: one line per statistic, one per layer with --all; " + hint
        print(f"({hint})")
    return 0


def cmd_cancel(args) -> int:
    """Exit 0 when the run is cancelled (queued) or asked to stop (running); 1 when it had already ended."""
    from engine.runs.runner import Runner

    runner = Runner()
    run_id = resolve(runner.store, args.run_id)
    # read first: request_cancel returns a terminal status unchanged, so "cancelled" alone could not tell a
    # run cancelled now from one cancelled last week (the read also reaps: a dead worker's run is interrupted)
    status = runner.store.get_run(run_id)["status"]
    if status not in TERMINAL:
        status = runner.cancel(run_id)
        if status == RunStatus.CANCELLED:
            print(f"{run_id}: cancelled")
            return 0
        if status == RunStatus.RUNNING:
            print(f"{run_id}: cancel requested; its worker stops it after the current step")
            return 0
    # it had ended (or ended between the read and the request)
    print(f"{run_id} is already {status}; nothing to cancel", file=sys.stderr)
    return 1


def cmd_resume(args) -> int:
    from engine.runs.runner import Runner

    runner = Runner()
    handle = runner.resume(resolve(runner.store, args.run_id))
    print(f"{handle.run_id}: queued to resume from its last checkpoint")
    return 0


def cmd_workers(args) -> int:
    from engine.runs.runner import Runner

    runner = Runner()
    if args.stop:
        runner.shutdown()
        print("workers stopped")
        return 0
    if args.start:
        started = runner.start_now()
        print(f"started {started} worker process(es)" if started else "the workers were already running")
        return 0
    runner.reap()
    live = runner.store.live_workers()
    problem = runner.pool_problem()
    if problem is not None:
        print(f"workers cannot start: {problem.describe()}")
    elif live.empty:
        print("no live workers (they start when a run is queued)")
    for row in live.itertuples():
        print(f"{row.worker_id} pid {row.pid} {row.device} {row.status}" + (f" run {row.run_id}" if row.run_id else ""))
    return 1 if problem is not None else 0
