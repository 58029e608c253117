"""The command line (`trainlens ...`, the same as `python -m engine ...`): the scripting interface for teachers
preparing a class.

train [--config FILE.toml] [--set key=value ...] [--name NAME] [--group G] [--wait]
runs [--json] | show RUN_ID [--json] | metrics RUN_ID [--all|--json|--csv] | cancel RUN_ID | resume RUN_ID
explain RUN_ID IMAGE --method NAME [--target CLASS] [--checkpoint EPOCH] --out FILE.png
explain RUN_ID --text "..." --method ig [--target CLASS] [--json]
lesson [--list] | lesson NAME [--wait]
explain-model IMAGE (--arch NAME --weights FILE [--config FILE.json] | --program FILE.pt2) [--method NAME] --out FILE.png
workers [--stop]
Bad arguments exit 2 with a one-line message, never a traceback; cancelling a run that already ended exits 1.
A store that cannot be used (damaged, disk full, locked) is one line naming the file and what to do, exit 2; a
file that cannot be written (`--out` a folder, a full disk) is one line, exit 1; anything unexpected is one line
with the place of its traceback (TRAINLENS_HOME/logs/cli-error.log), exit 1.
Output piped into a reader that stops early (`| head`) ends quietly, with the shell's SIGPIPE status 141.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from engine.config import RunConfig, parse_assignment
from engine.records import (
    ACTIVE,
    EPOCH_KEYS,
    FINAL_KEYS,
    LAYER_STAT_SEPARATOR,
    STEP_KEYS,
    SUCCEEDED,
    TERMINAL,
    RunStatus,
    is_epoch_level,
    report_artifact,
)

MAX_CONFIG_BYTES = 100_000
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a command killed by SIGPIPE (`yes | head -1`)


class UsageError(Exception):
    """Bad user input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints the whole usage; one line is kinder in scripts
        raise UsageError(message)


def _prog() -> str:
    """How the user called us, for help and hints: the `trainlens` console script or `python -m engine`."""
    return "trainlens" if Path(sys.argv[0]).name == "trainlens" else "python -m engine"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=_prog(), description="TrainLens engine: train, inspect and explain runs.")
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

    metrics = sub.add_parser("metrics", help="a summary of a run's metrics per key (every row with --csv/--json)")
    metrics.add_argument("run_id")
    fmt = metrics.add_mutually_exclusive_group()
    fmt.add_argument("--all", action="store_true", help="one summary line per layer for per-layer statistics")
    fmt.add_argument("--json", action="store_true", help="every logged row")
    fmt.add_argument("--csv", action="store_true", help="every logged row")

    for name, text in (("cancel", "cancel a queued or running run"), ("resume", "resume a run from its last checkpoint")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("run_id")

    explain = sub.add_parser("explain", help="attribution heatmap of an image for a run's checkpoint")
    explain.add_argument("run_id")
    explain.add_argument("image", nargs="?", default=None, help="image file (image runs)")
    explain.add_argument("--text", default=None, help="text to explain, token by token (text runs)")
    explain.add_argument("--json", action="store_true", help="with --text: print JSON")
    explain.add_argument("--method", default="saliency")
    explain.add_argument("--target", type=int, default=None, help="class index (default: the predicted class)")
    explain.add_argument("--checkpoint", default="best", help="epoch number, 'best' or 'last'")
    explain.add_argument("--out", default=None, help="PNG file to write (image runs)")
    own = sub.add_parser("explain-model", help="attribution heatmap of an image for a model TrainLens did not train")
    own.add_argument("image")
    own.add_argument("--arch", help="torchvision architecture of --weights, e.g. resnet18")
    own.add_argument("--weights", help="safetensors file or a PyTorch state dict (read with weights_only=True)")
    own.add_argument("--program", help=".pt2 exported program in a folder listed in TRAINLENS_MODEL_DIRS")
    own.add_argument("--config", help="JSON: input_size, mean, std, classes (default: ImageNet preparation)")
    own.add_argument("--method", default="saliency")
    own.add_argument("--target", type=int, default=None, help="class index (default: the predicted class)")
    own.add_argument("--out", required=True, help="PNG file to write")

    klass = sub.add_parser("class", help="serve the dashboard to a class on this network (class mode)")
    klass.add_argument("--host", default="auto",
                       help="address to listen on (default: this computer's address on the local network)")
    klass.add_argument("--port", type=int, default=8501)
    klass.add_argument("--dry-run", action="store_true", help="check the settings and print the address, start nothing")

    lesson = sub.add_parser("lesson", help="list the classroom lessons, or run one and print its answer (--wait)")
    lesson.add_argument("name", nargs="?", help="the lesson to run (see --list)")
    lesson.add_argument("--list", action="store_true", help="list the lessons")
    lesson.add_argument("--wait", action="store_true", help="wait for the runs, print the answer; exit 1 if a claim fails")

    workers = sub.add_parser("workers", help="list worker processes")
    workers.add_argument("--stop", action="store_true", help="stop all workers on this host")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # a reader that left (`| head -1`) shows up here at the latest, not at interpreter exit
        return code
    except BrokenPipeError:
        # The recipe of Python's docs (signal module, "Note on SIGPIPE"): point stdout at devnull so the
        # interpreter's final flush cannot raise again, and end quietly: stopping early is the reader's choice.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (an embedding host): nothing left to flush
            pass
        return EXIT_BROKEN_PIPE


def _run(argv: list[str] | None) -> int:
    import sqlite3

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        return _fail(exc, 2)
    except sqlite3.DatabaseError as exc:  # met after opening (a page deep in a truncated file)
        from engine.paths import db_path
        from engine.runs.store.errors import describe

        return _fail(describe(exc, db_path()), 2)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        return _fail(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc, 2)
    except RecursionError:
        return _fail("the input nests too deeply to be read", 2)
    except BrokenPipeError:
        raise
    except OSError as exc:  # an output that cannot be written: a folder, /dev/full, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # The store's errors are imported only here: the store package imports pandas, which `--help` and bad
        # arguments must not pay for (a StoreUnavailable comes from a store that is already imported).
        from engine.runs.store.errors import StoreUnavailable

        if isinstance(exc, StoreUnavailable):
            return _fail(exc, 2)
        # a bug: one line for the user, the traceback kept for the report
        return _fail(f"unexpected {type(exc).__name__}: {exc} (details in {_save_traceback()})", 1)


def _fail(message, code: int) -> int:
    """Print `error: MESSAGE` on one line (cut to a readable length) and return the exit status."""
    text = " ".join(str(message).split())
    print(f"error: {text if len(text) <= 600 else text[:597] + '...'}", file=sys.stderr)
    return code


def _save_traceback() -> str:
    import traceback

    try:
        from engine.paths import logs_dir

        path = logs_dir() / "cli-error.log"
        path.write_text(traceback.format_exc())
        return str(path)
    except Exception:  # noqa: BLE001 - the one-line error must still come out
        return "no log: the logs folder cannot be written"


def _store():
    from engine.runs.store import Store

    return Store()


def _resolve(store, run_id: str) -> str:
    full = store.find_run(run_id)
    if full is None:
        raise UsageError(f"no run matches {run_id!r} (see `{_prog()} runs`)")
    return full


def cmd_train(args) -> int:
    data: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"--config {args.config}: no such file")
        if path.stat().st_size > MAX_CONFIG_BYTES:  # checked before reading: a run's config is a few hundred bytes
            raise UsageError(f"--config {args.config}: {path.stat().st_size:,} bytes; a run's config is at most "
                             f"{MAX_CONFIG_BYTES:,}")
        try:
            text = path.read_text(encoding="utf-8")
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
        return 0
    status = _wait_with_progress(runner.store, handle)
    run = runner.store.get_run(handle.run_id)
    final = runner.store.last_values(handle.run_id)
    if "val_acc" in final:
        print(f"{status}: val_acc={final['val_acc']:.4f} val_loss={final['val_loss']:.4f}", file=sys.stderr)
    if run and run["error"]:
        print(f"{status}: {run['error']}", file=sys.stderr)
    return 0 if status in SUCCEEDED else 1


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
            if run["status"] not in ACTIVE:
                return run["status"]
            time.sleep(0.3)
    except KeyboardInterrupt:
        print(f"\nstopped waiting; run {handle.run_id} continues (cancel it with `{_prog()} cancel`)", file=sys.stderr)
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
        print(f"no runs yet: start one with `{_prog()} train --wait`")
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
    report = store.get_artifact(run_id, report_artifact("best")) or store.get_artifact(run_id, report_artifact("last"))
    summary = {"run_id": run_id, "name": run["name"], "group": run["group"], "status": run["status"],
               "error": run["error"], "device": run["device"], "step": run["step"], "total_steps": run["total_steps"],
               "config": run["config"].to_dict(), "final_metrics": final, "report": report}
    if args.json:
        print(json.dumps(summary, default=_json_default))
        return 0
    print(f"{run['name']} ({run_id}): {run['status']}" + (f" - {run['error']}" if run["error"] else ""))
    print(f"steps {run['step']}/{run['total_steps']} on {run['device'] or '-'}")
    print("config: " + " ".join(f"{k}={v}" for k, v in run["config"].to_dict().items() if v != getattr(RunConfig(), k)))
    for key in FINAL_KEYS:
        if key in final:
            print(f"  {key:<14} {final[key]:.4f}")
    if report and report.get("report_text"):
        print("\nclassification report (validation set):\n" + report["report_text"])
    return 0


def cmd_metrics(args) -> int:
    store = _store()
    run_id = _resolve(store, args.run_id)
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


SUMMARY_HEADER = ("key", "rows", "first step", "last step", "last value", "min", "max")


def metrics_summary(frame, every_layer: bool = False) -> list[str]:
    """The lines of a table with one row per metric key (SUMMARY_HEADER) of a non-empty get_metrics frame.

    The step keys come first in their logging order, then the epoch keys, their EMA/SWA twins, any other key,
    and the per-layer statistics, which are folded into one line per statistic (`grad_std/*`) unless
    `every_layer`: a convnet logs dozens of them, and a summary must stay readable in a terminal."""
    aggregated = frame.groupby("key", sort=False).agg(rows=("value", "size"), first=("step", "min"),
                                                      last=("step", "max"), low=("value", "min"),
                                                      high=("value", "max"))
    stats = {row.Index: (int(row.rows), int(row.first), int(row.last), float(row.low), float(row.high))
             for row in aggregated.itertuples()}
    # the value of each key's last row (groupby.last would skip a final NaN: a diverged loss must show as nan)
    last_value = dict(zip(frame["key"], frame["value"]))
    lines: dict[str, tuple] = {}
    folded: dict[str, list[str]] = {}
    for key in stats:
        statistic, separator, _ = key.partition(LAYER_STAT_SEPARATOR)
        if separator and not every_layer:
            folded.setdefault(statistic, []).append(key)
        else:
            lines[key] = (*stats[key][:3], last_value[key], *stats[key][3:])
    for statistic, keys in folded.items():
        parts = [stats[k] for k in keys]
        label = f"{statistic}{LAYER_STAT_SEPARATOR}* ({len(keys)} layers)"
        lines[label] = (sum(p[0] for p in parts), min(p[1] for p in parts), max(p[2] for p in parts), None,
                        _nanmin(p[3] for p in parts), _nanmax(p[4] for p in parts))
    ordered = sorted(lines.items(), key=lambda item: _key_rank(item[0]))
    cells = [(key, str(count), str(first), str(last), _number(value), _number(low), _number(high))
             for key, (count, first, last, value, low, high) in ordered]
    return _table(SUMMARY_HEADER, cells)


def _key_rank(key: str) -> tuple:
    if key in STEP_KEYS:
        return (0, STEP_KEYS.index(key), key)
    if key in EPOCH_KEYS:
        return (1, 0, key)
    if is_epoch_level(key):  # ema_/swa_ twins of the validation keys
        return (2, 0, key)
    return (4 if LAYER_STAT_SEPARATOR in key else 3, 0, key)


def _nanmin(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return min(finite) if finite else math.nan


def _nanmax(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return max(finite) if finite else math.nan


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Columns two spaces apart: the first left-aligned, numbers right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    return [line(header)] + [line(row) for row in rows]


def cmd_cancel(args) -> int:
    """Exit 0 when the run is cancelled (queued) or asked to stop (running); 1 when it had already ended."""
    from engine.runs.runner import Runner

    runner = Runner()
    run_id = _resolve(runner.store, args.run_id)
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
    handle = runner.resume(_resolve(runner.store, args.run_id))
    print(f"{handle.run_id}: queued to resume from its last checkpoint")
    return 0


def cmd_explain(args) -> int:
    from engine.explain.render import explain_to_png

    store = _store()
    run_id = _resolve(store, args.run_id)
    if args.text is not None:  # a text run: one score per token (engine.explain.text_run)
        from engine.explain.text_run import explain_text_run, format_scores

        which = args.checkpoint if args.checkpoint in ("best", "last") else _int(args.checkpoint, "--checkpoint")
        try:
            result = explain_text_run(run_id, args.text, args.method, args.target, which)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(json.dumps(result) if args.json else format_scores(result))
        return 0
    run = store.get_run(run_id)
    from engine.datasets import dataset_info

    if run is not None and run["config"] is not None and dataset_info(run["config"].dataset).kind == "text":
        raise UsageError(f"run {run_id} reads text: explain a sentence with --text \"...\" (no image, no --out)")
    if args.image is None or args.out is None:
        raise UsageError("explain needs an IMAGE and --out FILE.png (or --text \"...\" for a text run)")
    from engine.explain.images import MAX_BYTES

    if not Path(args.image).is_file():
        raise UsageError(f"{args.image}: no such file")
    if Path(args.image).stat().st_size > MAX_BYTES:  # before reading it: a 3 GB file must not be read to be refused
        raise UsageError(f"{args.image}: {Path(args.image).stat().st_size:,} bytes; images up to "
                         f"{MAX_BYTES // 2**20} MB are explained")
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file name such as {out / 'explanation.png'}")
    which = args.checkpoint if args.checkpoint in ("best", "last") else _int(args.checkpoint, "--checkpoint")
    result = explain_to_png(run_id, args.image, args.method, args.target, which, args.out)
    print(json.dumps(result, default=_json_default) if isinstance(result, dict) else result)
    return 0


def cmd_explain_model(args) -> int:
    from engine.explain.own_model import OwnModelError, explain_own_to_png

    if not Path(args.image).is_file():
        raise UsageError(f"{args.image}: no such file")
    try:
        result = explain_own_to_png(args.image, args.method, architecture=args.arch, weights=args.weights,
                                    program=args.program, config=args.config, target=args.target, out=args.out)
    except OwnModelError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(result, default=_json_default))
    return 0


def cmd_class(args) -> int:
    """Serve the dashboard to a room: class mode on (both passphrases set), listening on the LAN address."""
    import getpass
    import subprocess

    from engine.classroom import ClassMode

    for variable, who in (("TRAINLENS_CLASS_PASSPHRASE", "students"), ("TRAINLENS_TEACHER_PASSPHRASE", "the teacher")):
        if not os.environ.get(variable) and sys.stdin.isatty() and not args.dry_run:
            os.environ[variable] = getpass.getpass(f"Passphrase for {who} ({variable}): ")  # never echoed
    problem = ClassMode().problem()
    if problem:
        raise UsageError(f"{problem}; set them in the environment (e.g. `export TRAINLENS_CLASS_PASSPHRASE=...`)")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: use a port between 1 and 65535")
    host = _lan_address() if args.host == "auto" else args.host
    hosts = ["localhost", "127.0.0.1", "::1"] + ([host] if host not in ("0.0.0.0", "::") else ["*"])
    print(f"Class mode: students open http://{host}:{args.port} and enter the class passphrase; the teacher enters "
          "the teacher passphrase. Stop with Ctrl-C.")
    if args.dry_run:
        return 0
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "streamlit", "run", str(root / "app" / "main.py"), "--server.address", host,
               "--server.port", str(args.port)]
    for name in hosts:
        command += ["--server.allowedHosts", name]
    try:
        return subprocess.call(command, cwd=root)  # the passphrases travel in the environment, never in argv
    except KeyboardInterrupt:
        return 0


def _lan_address() -> str:
    """This computer's address on the local network (the interface a packet to the LAN would leave by); no packet
    is sent. 127.0.0.1 when there is no network."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


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


def cmd_lesson(args) -> int:
    """List the lessons, or launch one (printing its group and run ids) and, with --wait, print its answer and
    claims once every run has ended. Exit 0 when launched (or, waiting, when every claim holds), 1 when a claim
    fails, 2 for an unknown lesson (ValueError, turned into one line by `_run`)."""
    from engine import lessons

    if args.list or not args.name:
        found, problems = lessons.load_lessons()
        for lesson in found:
            runs = len(lesson.variants) * lesson.seeds
            print(f"{lesson.name:<22} {lesson.title} ({runs} run{'s' if runs > 1 else ''}, ~{lesson.minutes:g} min)")
        for problem in problems.values():
            print(f"unreadable lesson {problem}", file=sys.stderr)
        return 0
    from engine.runs.runner import Runner

    lesson = lessons.get_lesson(args.name)
    runner = Runner()
    group, run_ids = lessons.launch(lesson, runner)
    print(f"{lesson.title}\n{lesson.question}")
    print(f"group: {group}")
    for run_id in run_ids:
        print(run_id, flush=True)
    if not args.wait:
        return 0
    last_recover = time.time()
    while True:
        runs = runner.store.list_runs(group=group)
        if time.time() - last_recover > 3.0:  # a killed worker: mark its run, keep the pool alive
            runner.recover()
            last_recover = time.time()
        if not runs["status"].isin([s.value for s in ACTIVE]).any():
            break
        time.sleep(0.5)
    result = lessons.outcome(lesson, lessons.results_from_store(runner.store, lesson, group))
    print(result.answer)
    for check in result.checks:
        mark = {True: "holds", False: "does NOT hold", None: "undecided"}[check.holds]
        print(f"  [{mark}] {check.claim.text} ({check.detail})")
    return 0 if result.holds else 1


COMMANDS = {"lesson": cmd_lesson, "train": cmd_train, "runs": cmd_runs, "show": cmd_show, "metrics": cmd_metrics,
            "cancel": cmd_cancel, "resume": cmd_resume, "explain": cmd_explain, "explain-model": cmd_explain_model,
            "class": cmd_class, "workers": cmd_workers}
