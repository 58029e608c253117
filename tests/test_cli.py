"""The command line: a real `python -m engine train --wait` on an isolated home, the read commands' JSON
and CSV output, the `metrics` summary, cancel, and bad arguments (exit 2, one line on stderr, never a
traceback); the installed `trainlens` command run from another folder, and output piped into `head`; `trainlens
class` stopped by a signal frees its port.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import engine_env

from engine.cli import main
from engine.cli.tables import SUMMARY_HEADER
from engine.config import RunConfig
from engine.records import STEP_KEYS, TERMINAL
from engine.runs.store import Store

PROJECT = str(Path(__file__).resolve().parent.parent)


def engine_cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout, env=engine_env(home, TRAINLENS_WORKERS="1"))


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_train_wait_then_inspect_the_run(trainlens_home, tmp_path, capsys):
    lesson = tmp_path / "lesson.toml"
    lesson.write_text('[run]\nmodel = "mlp"\nhidden = 16\ndepth = 1\nepochs = 1\ntrain_limit = 500\n'
                      'batch_size = 32\nval_fraction = 0.05\nlayer_stats_every = 0\n')
    done = engine_cli(trainlens_home, "train", "--config", str(lesson), "--set", "train_limit=64",
                      "--set", "device=cpu", "--name", "cli run", "--wait", timeout=200)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{12}", run_id), done.stdout
    assert "Traceback" not in done.stderr

    store = Store()
    run = store.get_run(run_id)
    assert run["status"] == "completed" and run["name"] == "cli run"
    assert (run["config"].hidden, run["config"].train_limit) == (16, 64)  # file values, with --set winning

    code, out, _ = run_main(capsys, "runs", "--json")
    assert code == 0
    runs = json.loads(out)
    assert [(r["run_id"], r["status"], r["name"]) for r in runs] == [(run_id, "completed", "cli run")]

    code, out, _ = run_main(capsys, "show", run_id[:6], "--json")  # a unique prefix is enough
    assert code == 0
    shown = json.loads(out)
    assert shown["run_id"] == run_id and shown["status"] == "completed"
    assert RunConfig.from_dict(shown["config"]) == run["config"]
    assert 0.0 <= shown["final_metrics"]["val_acc"] <= 1.0

    expected_rows = math.ceil(64 / 32) * 5 + 8  # steps x step keys + one epoch of epoch keys
    code, out, _ = run_main(capsys, "metrics", run_id, "--csv")
    assert code == 0
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == ["run_id", "step", "epoch", "key", "value", "wall_time"]
    assert len(frame) == expected_rows and set(frame["run_id"]) == {run_id}
    code, out, _ = run_main(capsys, "metrics", run_id, "--json")
    assert code == 0
    records = json.loads(out)
    assert len(records) == expected_rows
    assert sorted(r["value"] for r in records if r["key"] == "loss") == sorted(frame[frame["key"] == "loss"]["value"])

    for args in (("runs",), ("show", run_id), ("metrics", run_id)):  # the human-readable forms work too
        code, out, _ = run_main(capsys, *args)
        assert code == 0 and out.strip()
    assert run_id in run_main(capsys, "runs")[1]


def test_cancel_a_queued_run(capsys):
    store = Store()
    run_id = store.create_run(RunConfig())  # no worker in this home: it stays queued
    code, out, _ = run_main(capsys, "cancel", run_id[:8])
    assert code == 0 and run_id in out and "cancelled" in out
    assert store.get_run(run_id)["status"] == "cancelled"


def test_metrics_json_is_exact_and_strict(capsys):
    store = Store()
    run_id = store.create_run(RunConfig())
    store.log_batch([(run_id, 1, 0, "loss", 2.3322196006774902, 1.5), (run_id, 2, 0, "loss", float("nan"), 2.5)])
    code, out, _ = run_main(capsys, "metrics", run_id, "--json")
    assert code == 0

    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    records = json.loads(out, parse_constant=refuse)
    assert [r["value"] for r in records] == [2.3322196006774902, None]  # every digit kept; NaN as null
    assert [(r["step"], r["key"]) for r in records] == [(1, "loss"), (2, "loss")]


BAD_ARGUMENTS = {
    "unknown subcommand": ["frobnicate"],
    "no subcommand": [],
    "unknown field": ["train", "--set", "learning_rate=0.1"],
    "bad value": ["train", "--set", "lr=fast"],
    "out of range": ["train", "--set", "lr=-1"],
    "unknown choice": ["train", "--set", "model=vgg"],
    "no equals sign": ["train", "--set", "lr"],
    "missing file": ["train", "--config", "no/such/lesson.toml"],
    "unknown run id": ["show", "0123456789ab"],
    "unknown run id for metrics": ["metrics", "0123456789ab", "--csv"],
    "unknown run id for cancel": ["cancel", "0123456789ab"],
    "two output formats": ["metrics", "abc", "--csv", "--json"],
}


def _assert_one_line_error(code: int, out: str, err: str) -> None:
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")


@pytest.mark.parametrize("args", list(BAD_ARGUMENTS.values()), ids=list(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_with_one_line(capsys, args):
    _assert_one_line_error(*run_main(capsys, *args))


@pytest.mark.parametrize("contents, word", [('[run]\nlearning_rate = 0.1\n', "learning_rate"),
                                            ('model = "mlp\n', "")], ids=["unknown key", "malformed toml"])
def test_bad_config_file_exits_2(capsys, tmp_path, contents, word):
    lesson = tmp_path / "lesson.toml"
    lesson.write_text(contents)
    code, out, err = run_main(capsys, "train", "--config", str(lesson))
    _assert_one_line_error(code, out, err)
    assert word in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unknown subcommand", "unknown field", "missing file", "unknown run id"])
def test_bad_arguments_in_a_real_process(trainlens_home, name):
    done = engine_cli(trainlens_home, *BAD_ARGUMENTS[name])
    _assert_one_line_error(done.returncode, done.stdout, done.stderr)
    assert not (trainlens_home / "trainlens.db").exists() or name == "unknown run id"  # nothing was queued


def test_cancel_a_running_run_asks_its_worker(capsys):
    store = Store()
    run_id = store.create_run(RunConfig())
    store.set_running(run_id, "w1", "cpu")  # taken by a worker that is not registered here: nothing reaps it
    code, out, _ = run_main(capsys, "cancel", run_id)
    assert code == 0 and out.strip() == f"{run_id}: cancel requested; its worker stops it after the current step"
    assert store.cancel_requested(run_id) and store.get_run(run_id)["status"] == "running"


@pytest.mark.parametrize("status", TERMINAL)
def test_cancel_a_run_that_already_ended_exits_1(capsys, status):
    store = Store()
    run_id = store.create_run(RunConfig())
    store.update_status(run_id, status)
    code, out, err = run_main(capsys, "cancel", run_id[:8])
    assert code == 1 and out == ""
    assert err.strip() == f"{run_id} is already {status}; nothing to cancel"
    assert store.get_run(run_id)["status"] == status and not store.cancel_requested(run_id)


LAYERS = [f"features.{i}" for i in range(12)]
STATISTICS = ["act_mean", "act_std", "dead_frac", "grad_std", "sat_frac", "update_ratio"]


def _table_rows(out: str) -> tuple[str, list[list[str]]]:
    """The header line and the cells of the rows of `metrics`' summary table."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["key", "rows"])
    body = [line for line in lines[start + 1:] if not line.startswith("(")]
    return lines[start], [re.split(r"\s{2,}", line.strip()) for line in body]


def test_metrics_prints_a_narrow_summary_by_default(capsys):
    store = Store()
    run_id = store.create_run(RunConfig())
    rows = []
    for step in range(1, 201):
        rows += [(run_id, step, 0, key, value, 1.0) for key, value in
                 (("loss", 1.0 / step), ("lr", 0.01), ("grad_norm", 2.0), ("clipped", 0.0), ("examples", 32.0 * step))]
        if step % 100 == 0:
            rows += [(run_id, step, 0, key, 0.5, 1.0) for key in ("val_loss", "train_loss", "val_acc", "ema_val_acc")]
        if step % 50 == 0:  # per-layer statistics every 50 steps: 72 keys
            rows += [(run_id, step, 0, f"{stat}/{layer}", step / 1000, 1.0) for stat in STATISTICS for layer in LAYERS]
    rows.append((run_id, 201, 0, "loss", float("nan"), 1.0))  # a diverged last step
    store.log_batch(rows)

    code, out, _ = run_main(capsys, "metrics", run_id)
    assert code == 0
    header, table = _table_rows(out)
    assert re.split(r"\s{2,}", header.strip()) == list(SUMMARY_HEADER)
    assert max(len(line) for line in out.splitlines()) < 120
    keys = [cells[0] for cells in table]
    assert keys == [*STEP_KEYS, "train_loss", "val_acc", "val_loss", "ema_val_acc",
                    *(f"{stat}/* (12 layers)" for stat in STATISTICS)]
    assert table[0] == ["loss", "201", "1", "201", "nan", "0.005", "1"]  # the last value as logged, min/max finite
    assert table[keys.index("examples")] == ["examples", "200", "1", "200", "6400", "32", "6400"]
    assert table[keys.index("grad_std/* (12 layers)")] == ["grad_std/* (12 layers)", "48", "50", "200", "-", "0.05", "0.2"]
    assert "--all" in out and "--csv" in out  # says where the rest is

    code, out, _ = run_main(capsys, "metrics", run_id, "--all")
    assert code == 0
    keys = [cells[0] for cells in _table_rows(out)[1]]
    assert len(keys) == 9 + len(STATISTICS) * len(LAYERS) and "update_ratio/features.11" in keys
    assert keys[-1] == "update_ratio/features.9"  # the layers sorted last, by name

    empty = store.create_run(RunConfig())
    assert run_main(capsys, "metrics", empty)[:2] == (0, f"{empty}: no metrics logged yet\n")


def installed_cli() -> tuple[list[str], bool]:
    """The `trainlens` console script of this interpreter when it is an editable install of this checkout
    (then it must work with no PYTHONPATH at all), else `python -m engine`."""
    script = Path(sys.executable).with_name("trainlens")
    # every match: the build's trainlens.egg-info in the project folder is a distribution too, without the
    # direct_url.json that pip writes next to the installed one
    origins = [json.loads(dist.read_text("direct_url.json") or "{}")
               for dist in importlib.metadata.distributions(name="trainlens")]
    if script.exists() and any(origin.get("url") == Path(PROJECT).as_uri() for origin in origins):
        return [str(script)], True
    return [sys.executable, "-m", "engine"], False


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_cli_works_from_any_folder(trainlens_home, tmp_path):
    command, installed = installed_cli()
    env = engine_env(trainlens_home, TRAINLENS_WORKERS="1")
    if installed:
        del env["PYTHONPATH"]  # the installed package alone finds the engine
    folder = tmp_path / "lessons"  # not the project, and not TRAINLENS_HOME's parent either
    folder.mkdir()
    (folder / "lesson.toml").write_text('model = "mlp"\nhidden = 8\ndepth = 1\nepochs = 1\ntrain_limit = 64\n'
                                          'batch_size = 32\nval_fraction = 0.05\nlayer_stats_every = 0\n'
                                          'device = "cpu"\n')

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *args], cwd=folder, capture_output=True, text=True, timeout=200, env=env)

    # a config path relative to the user's folder; the runner starts its worker from the project, not from here
    done = cli("train", "--config", "lesson.toml", "--wait")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    listed = cli("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)] == [(run_id, "completed")]
    assert sorted(p.name for p in folder.iterdir()) == ["lesson.toml"]  # nothing written into the user's folder


@pytest.mark.slow
def test_piping_into_head_ends_quietly(trainlens_home):
    store = Store()
    run_ids = [store.create_run(RunConfig(seed=seed)) for seed in range(1500)]
    store.log_batch([(run_ids[0], step, 0, key, 1.0 / step, 1.0) for step in range(1, 3001) for key in STEP_KEYS])
    cli = shlex.join([sys.executable, "-m", "engine"])
    # `head -n 0` leaves before the command writes a byte (a broken pipe every time); `head -1` after one line
    for args in ("runs", f"show {run_ids[0]}", f"metrics {run_ids[0]}", f"metrics {run_ids[0]} --csv"):
        for reader, lines in (("head -n 0", 0), ("head -1", 1)):
            done = subprocess.run(["bash", "-c", f"{cli} {args} | {reader}; exit ${{PIPESTATUS[0]}}"], cwd=PROJECT,
                                  capture_output=True, text=True, timeout=60, env=engine_env(trainlens_home))
            assert "Traceback" not in done.stderr and done.stderr == "", (args, reader, done.stderr)
            assert len(done.stdout.splitlines()) == lines
            assert done.returncode in ((141,) if lines == 0 else (0, 141)), (args, reader)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_the_class_server_stops_on_a_signal_and_frees_its_port(trainlens_home, signum):
    """`kill` (SIGTERM) or a closed terminal (SIGHUP) stops `trainlens class`'s server: nothing listens on its port
    within 5 s, and a restart on the same port (with new passphrases) serves."""
    from ui_helpers import free_port, wait_for

    port = free_port()
    trainlens_home.mkdir(parents=True, exist_ok=True)
    for attempt, word in enumerate(("sunflower-42", "tulip-77")):
        env = engine_env(trainlens_home, TRAINLENS_CLASS_PASSPHRASE=word, TRAINLENS_TEACHER_PASSPHRASE="teacher-oak-7",
                         TRAINLENS_WARM_POOL="0", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
        log = trainlens_home / f"class-{attempt}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "engine", "class", "--host", "127.0.0.1", "--port",
                                     str(port)], cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(lambda: _listening(port) or proc.poll() is not None, 90, what="the class server")
            assert proc.poll() is None, log.read_text()  # serving (the first time; and again on the same port)
            proc.send_signal(signum)
            wait_for(lambda: not _listening(port), 5, interval=0.1, what=f"port {port} freed")
            proc.wait(timeout=10)
        finally:  # whatever happened, no server of this test is left (its whole process group)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_every_command_a_message_or_page_names_exists():
    """A message once advised `python -m engine delete RUN`, which does not exist. Every command (and flag) the engine
    and the pages name in backticks must be one the command line has."""
    import re

    from engine.cli import build_parser

    parser, commands = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    named = re.compile(r"`(?:trainlens|python -m engine|\{prog\(\)\}) ([a-z][a-z-]*)((?: [A-Z_]+| --?[a-z][a-z-]*)*)")
    root = Path(__file__).resolve().parent.parent
    found = []
    for path in [*(root / "engine").rglob("*.py"), *(root / "app").rglob("*.py")]:
        for command, rest in named.findall(path.read_text()):
            flags = re.findall(r"--?[a-z][a-z-]*", rest)
            found.append(command)
            assert command in commands, f"{path.name} names `{command}`, which the command line does not have"
            for flag in flags:
                assert flag in subcommands[command]._option_string_actions, f"{path.name}: `{command} {flag}`"
    assert {"cancel", "workers", "class"} <= set(found)  # the scan reads real messages
