"""The run commands: train (and wait with a progress bar), runs, show, metrics, cancel, resume, workers."""

from __future__ import annotations

import json
import math
import sys
import time

from engine.cli.common import UsageError, json_default, open_store, prog, resolve
from engine.cli.tables import metrics_summary
from engine.config import RunConfig, parse_assignment
from engine.records import (ACTIVE, FINAL_KEYS, LAYER_STAT_SEPARATOR, SUCCEEDED, TERMINAL, RunKind, RunStatus,
                             report_artifact)

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
    from engine.runs.runner import Runner

    try:
        runner = Runner(store)

        def cannot_start(run) -> str | None:
            problem = runner.pool_problem() if run["status"] == RunStatus.QUEUED else None
            return None if problem is None else (f"error: run {handle.run_id} cannot start: {problem.describe()}. It "
                                                 f"stays queued (`{prog()} cancel {handle.run_id}` drops it)")

        return follow_progress(lambda: store.get_run(handle.run_id), runner.recover, sys.stderr, stuck=cannot_start)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; run {handle.run_id} continues (cancel it with `{prog()} cancel`)", file=sys.stderr)
        raise


# tqdm's own rate and time left are left out: it would time the steps from the bar's start (the queue, data loading)
# and print a first ETA many times too long; the store's `eta_s` (engine.runs.store.runs) is the one ETA
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps{postfix}"


def follow_progress(read, recover, out, poll_s: float = 0.3, recover_s: float = 3.0, stuck=lambda run: None) -> str:
    """Draw `read()`'s run (a RunRecord) as a progress bar on `out` until it ends; returns its final status, or
    `queued` as soon as `stuck(run)` gives a reason it can never start (printed: waiting would be for ever).

    The bar is redrawn once per change of what it shows (status, epoch, step, ETA to the second), never on a poll
    that changed nothing: a log of the output has each update once. `recover()` runs every `recover_s` (a killed
    worker: its run is marked, the pool kept alive)."""
    from tqdm import tqdm

    bar = tqdm(total=1, file=out, dynamic_ncols=True, desc="queued", bar_format=BAR_FORMAT, mininterval=0)
    shown, last_recover = None, time.monotonic()
    try:
        while True:
            if time.monotonic() - last_recover > recover_s:
                last_recover = time.monotonic()
                recover()
            run = read()
            reason = stuck(run)
            if reason is not None:
                bar.disable = True
                out.write(f"\n{reason}\n")
                return RunStatus.QUEUED
            if run["total_steps"]:
                eta = run["eta_s"]
                view = (run["status"], run["epoch"], run["step"], run["total_steps"],
                        None if eta is None or math.isnan(eta) else round(eta))
                if view != shown:
                    shown = view
                    bar.total, bar.n = run["total_steps"], run["step"]
                    bar.set_description(f"{run['status']} epoch {run['epoch'] + 1}/{run['config'].epochs}",
                                        refresh=False)
                    bar.set_postfix_str(f"ETA {_clock(view[-1])}" if view[-1] is not None else "", refresh=False)
                    bar.refresh()
            if run["status"] not in ACTIVE:
                bar.disable = True  # its last line is drawn: closing would draw it a second time
                out.write("\n")
                return run["status"]
            time.sleep(poll_s)
    finally:
        bar.close()


def _clock(seconds: float) -> str:
    """'0:41', '12:05', '1:02:03'."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def cmd_runs(args) -> int:
    frame = open_store().list_runs()
    columns = ["run_id", "name", "group", "status", "progress", "eta_s", "device", "created_at", "kind"]
    if args.json:
        print(frame[columns].to_json(orient="records"))
        return 0
    if frame.empty:
        print(f"no runs yet: start one with `{prog()} train --wait`")
        return 0
    for row in frame.itertuples():
        eta = f" eta {row.eta_s:.0f}s" if row.eta_s is not None and not math.isnan(row.eta_s) else ""
        kind = f"  ({row.kind})" if row.kind == RunKind.SCRIPT else ""  # a script's run: no progress to know
        group = f"  [{row.group}]" if row.group else ""
        print(f"{row.run_id}  {row.status:<13} {row.progress:6.1%}{eta}  {row.name}{group}{kind}")
    return 0


def cmd_show(args) -> int:
    store = open_store()
    run_id = resolve(store, args.run_id)
    run = store.get_run(run_id)
    final = store.last_values(run_id)
    report = store.get_artifact(run_id, report_artifact("best")) or store.get_artifact(run_id, report_artifact("last"))
    waiting = store.waiting_reason(run) if run["status"] == RunStatus.QUEUED else None  # e.g. no worker can start
    summary = {"run_id": run_id, "name": run["name"], "group": run["group"], "status": run["status"],
               "error": run["error"], "waiting": waiting, "device": run["device"], "step": run["step"],
               "total_steps": run["total_steps"], "config": run["config"].to_dict(), "final_metrics": final,
               "report": report, "kind": run["kind"]}
    script = store.script_info(run_id) if run["kind"] == RunKind.SCRIPT else None
    if script is not None:
        summary["script"] = script
    lineage = _lineage(store, run) if run["kind"] != RunKind.SCRIPT else {}
    summary.update(lineage)
    if args.json:
        print(json.dumps(summary, default=json_default))
        return 0
    print(f"{run['name']} ({run_id}): {run['status']}" + (f" - {run['error']}" if run["error"] else ""))
    if run["kind"] == RunKind.SCRIPT:
        _show_script(run, script or {}, final)
        return 0
    if waiting:
        print(f"waiting: {waiting}")
    print(f"steps {run['step']}/{run['total_steps']} on {run['device'] or '-'}")
    for line in _lineage_lines(lineage):
        print(line)
    print("config: " + " ".join(f"{k}={v}" for k, v in run["config"].to_dict().items() if v != getattr(RunConfig(), k)))
    for key in FINAL_KEYS:
        if key in final:
            print(f"  {key:<14} {final[key]:.4f}")
    if report and report.get("report_text"):
        print("\nclassification report (validation set):\n" + report["report_text"])
    return 0


def _lineage(store, run) -> dict:
    """`show`'s "source" (the run this one started from: id, name, weights) and "parameters" (all, trainable, frozen,
    in adapters), each only when known."""
    from engine.records import MODEL_SUMMARY
    from engine.runs.lineage import source_id

    out: dict = {}
    init_from = run["config"].init_from
    if init_from:
        source = store.get_run(source_id(init_from))
        out["source"] = {"run_id": source_id(init_from), "weights": init_from.partition(":")[2] or "best",
                         "name": source["name"] if source else None}
    model = store.get_artifact(run["run_id"], MODEL_SUMMARY)
    if isinstance(model, dict) and "trainable" in model:
        out["parameters"] = {key: model.get(key) for key in ("parameters", "trainable", "frozen", "adapter")}
    return out


def _lineage_lines(lineage: dict) -> list[str]:
    lines = []
    source = lineage.get("source")
    if source:
        name = source["name"] if source["name"] is not None else "a deleted run"
        lines.append(f"from: {name} ({source['run_id']}, {source['weights']} weights)")
    counts = lineage.get("parameters")
    if counts:
        adapter = f" ({counts['adapter']:,} in adapters)" if counts.get("adapter") else ""
        lines.append(f"parameters: {counts['parameters']:,}: {counts['trainable']:,} trainable, "
                     f"{counts['frozen']:,} frozen{adapter}")
    return lines


SHOWN_KEYS = 30  # a script's last values shown by `show`: its keys are its own, so all of them, up to this many


def _show_script(run, script: dict, final: dict[str, float]) -> None:
    """`show`'s text for a script's run: who ran it, its config as given, the last value of each key."""
    where = f"{script.get('program') or '?'} on {script.get('host') or '?'}"
    if script.get("source"):
        where = f"imported from {script['source']}"
    elif script.get("pid"):
        where += f" (pid {script['pid']})"
    print(f"script run: {where}; last step {run['step']}")
    config = run["config"].to_dict()
    print("config: " + (" ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}"
                                 for k, v in config.items()) if config else "(none given)"))
    for key in sorted(final)[:SHOWN_KEYS]:
        value = final[key]
        print(f"  {key:<14} " + ("nan" if value is None else f"{value:.6g}"))
    if len(final) > SHOWN_KEYS:
        print(f"  ... and {len(final) - SHOWN_KEYS} more keys (`{prog()} metrics {run['run_id']}`)")


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
        # a script's keys are its own ('Loss/train' is a TensorBoard tag, not a layer's statistic): never folded
        every_key = args.all or store.get_run(run_id)["kind"] == RunKind.SCRIPT
        print("\n".join(metrics_summary(frame, every_layer=every_key)))
        hint = "every row: --csv or --json"
        if not every_key and frame["key"].str.contains(LAYER_STAT_SEPARATOR, regex=False).any():
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
    run = runner.store.get_run(run_id)
    status = run["status"]
    if status not in TERMINAL:
        status = runner.cancel(run_id)
        if status == RunStatus.CANCELLED:
            print(f"{run_id}: cancelled")
            return 0
        if status == RunStatus.RUNNING:
            who = ("its script stops it at its next log (trainlens.RunCancelled)" if run["kind"] == RunKind.SCRIPT
                   else "its worker stops it after the current step")
            print(f"{run_id}: cancel requested; {who}")
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
