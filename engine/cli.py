"""The command line (`python -m engine ...`): the scripting interface for teachers preparing a class.

train [--config FILE.toml] [--set key=value ...] [--name NAME] [--group G] [--wait]
runs [--json] | show RUN_ID [--json] | metrics RUN_ID [--json|--csv] | cancel RUN_ID | resume RUN_ID
explain RUN_ID IMAGE --method NAME [--target CLASS] [--checkpoint EPOCH] --out FILE.png
workers [--stop]
Bad arguments exit 2 with a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from engine.config import RunConfig, parse_assignment


class UsageError(Exception):
    """Bad user input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints the whole usage; one line is kinder in scripts
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description="TrainLens engine: train, inspect and explain runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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

    metrics = sub.add_parser("metrics", help="all logged metrics of a run")
    metrics.add_argument("run_id")
    fmt = metrics.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")

    for name, text in (("cancel", "cancel a queued or running run"), ("resume", "resume a run from its last checkpoint")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("run_id")

    explain = sub.add_parser("explain", help="attribution heatmap of an image for a run's checkpoint")
    explain.add_argument("run_id")
    explain.add_argument("image")
    explain.add_argument("--method", default="saliency")
    explain.add_argument("--target", type=int, default=None, help="class index (default: the predicted class)")
    explain.add_argument("--checkpoint", default="best", help="epoch number, 'best' or 'last'")
    explain.add_argument("--out", required=True, help="PNG file to write")

    workers = sub.add_parser("workers", help="list worker processes")
    workers.add_argument("--stop", action="store_true", help="stop all workers on this host")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _store():
    from engine.runs.store import Store

    return Store()


def _resolve(store, run_id: str) -> str:
    full = store.find_run(run_id)
    if full is None:
        raise UsageError(f"no run matches {run_id!r} (see `python -m engine runs`)")
    return full


def cmd_train(args) -> int:
    data: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"--config {args.config}: no such file")
        data = RunConfig.from_toml(path.read_text()).to_dict()
    for assignment in args.set:
        key, value = parse_assignment(assignment)
        data[key] = value
    config = RunConfig.from_dict({**RunConfig().to_dict(), **data})

    from engine.runs.runner import Runner

    runner = Runner()
    handle = runner.submit(config, name=args.name, group=args.group)
    print(handle.run_id, flush=True)
    if not args.wait:
        return 0
    status = _wait_with_progress(runner.store, handle)
    run = runner.store.get_run(handle.run_id)
    final = runner.store.last_values(handle.run_id)
    if "val_acc" in final:
        print(f"{status}: val_acc={final['val_acc']:.4f} val_loss={final['val_loss']:.4f}", file=sys.stderr)
    if run and run["error"]:
        print(f"{status}: {run['error']}", file=sys.stderr)
    return 0 if status in ("completed", "stopped_early") else 1


def _wait_with_progress(store, handle) -> str:
    """Progress bar until the run ends; returns its final status."""
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
            if run["total_steps"]:
                bar.total = run["total_steps"]
                bar.n = run["step"]
                bar.set_description(f"{run['status']} epoch {run['epoch'] + 1}/{run['config'].epochs}")
                bar.refresh()
            if run["status"] not in ("queued", "running"):
                return run["status"]
            time.sleep(0.3)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; run {handle.run_id} continues (cancel it with `python -m engine cancel`)", file=sys.stderr)
        raise
    finally:
        bar.close()


def cmd_runs(args) -> int:
    frame = _store().list_runs()
    columns = ["run_id", "name", "group", "status", "progress", "eta_s", "device", "created_at"]
    if args.json:
        print(frame[columns].to_json(orient="records"))
        return 0
    if frame.empty:
        print("no runs yet: start one with `python -m engine train --wait`")
        return 0
    for row in frame.itertuples():
        eta = f" eta {row.eta_s:.0f}s" if row.eta_s is not None and not math.isnan(row.eta_s) else ""
        print(f"{row.run_id}  {row.status:<13} {row.progress:6.1%}{eta}  {row.name}" + (f"  [{row.group}]" if row.group else ""))
    return 0


def cmd_show(args) -> int:
    store = _store()
    run_id = _resolve(store, args.run_id)
    run = store.get_run(run_id)
    final = store.last_values(run_id)
    report = store.get_artifact(run_id, "report/best") or store.get_artifact(run_id, "report/last")
    summary = {"run_id": run_id, "name": run["name"], "group": run["group"], "status": run["status"],
               "error": run["error"], "device": run["device"], "step": run["step"], "total_steps": run["total_steps"],
               "config": run["config"].to_dict(), "final_metrics": final, "report": report}
    if args.json:
        print(json.dumps(summary, default=_json_default))
        return 0
    print(f"{run['name']} ({run_id}): {run['status']}" + (f" - {run['error']}" if run["error"] else ""))
    print(f"steps {run['step']}/{run['total_steps']} on {run['device'] or '-'}")
    print("config: " + " ".join(f"{k}={v}" for k, v in run["config"].to_dict().items() if v != getattr(RunConfig(), k)))
    for key in ("train_loss", "val_loss", "val_acc", "val_precision", "val_recall", "val_f1"):
        if key in final:
            print(f"  {key:<14} {final[key]:.4f}")
    if report and report.get("report_text"):
        print("\nclassification report (validation set):\n" + report["report_text"])
    return 0


def cmd_metrics(args) -> int:
    store = _store()
    frame = store.get_metrics(_resolve(store, args.run_id)).drop(columns=["id"])
    if args.csv:
        print(frame.to_csv(index=False), end="")
    elif args.json:
        # not frame.to_json: it rounds values to 10 digits; a non-finite value (a diverged loss) becomes null
        records = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
                   for row in frame.to_dict(orient="records")]
        print(json.dumps(records))
    else:
        wide = frame.pivot_table(index="step", columns="key", values="value", aggfunc="last")
        print(wide.to_string(max_rows=40))
    return 0


def cmd_cancel(args) -> int:
    from engine.runs.runner import Runner

    runner = Runner()
    run_id = _resolve(runner.store, args.run_id)
    status = runner.cancel(run_id)
    print(f"{run_id}: {'cancelled' if status == 'cancelled' else 'cancel requested (' + status + ')'}")
    return 0


def cmd_resume(args) -> int:
    from engine.runs.runner import Runner

    runner = Runner()
    handle = runner.resume(_resolve(runner.store, args.run_id))
    print(f"{handle.run_id}: queued to resume from its last checkpoint")
    return 0


def cmd_explain(args) -> int:
    from engine.explain.render import explain_to_png

    store = _store()
    run_id = _resolve(store, args.run_id)
    if not Path(args.image).is_file():
        raise UsageError(f"{args.image}: no such file")
    which = args.checkpoint if args.checkpoint in ("best", "last") else _int(args.checkpoint, "--checkpoint")
    result = explain_to_png(run_id, args.image, args.method, args.target, which, args.out)
    print(json.dumps(result, default=_json_default) if isinstance(result, dict) else result)
    return 0


def cmd_workers(args) -> int:
    from engine.runs.runner import Runner

    runner = Runner()
    if args.stop:
        runner.shutdown()
        print("workers stopped")
        return 0
    runner.reap()
    live = runner.store.live_workers()
    if live.empty:
        print("no live workers (they start when a run is queued)")
    for row in live.itertuples():
        print(f"{row.worker_id} pid {row.pid} {row.device} {row.status}" + (f" run {row.run_id}" if row.run_id else ""))
    return 0


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected an epoch number, 'best' or 'last'") from None


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


COMMANDS = {"train": cmd_train, "runs": cmd_runs, "show": cmd_show, "metrics": cmd_metrics, "cancel": cmd_cancel,
            "resume": cmd_resume, "explain": cmd_explain, "workers": cmd_workers}
