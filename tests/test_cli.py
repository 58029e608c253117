"""The command line: a real `python -m engine train --wait` on an isolated home, the read commands' JSON
and CSV output, cancel, and bad arguments (exit 2, one line on stderr, never a traceback).
"""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import engine_env

from engine.cli import main
from engine.config import RunConfig
from engine.runs.store import Store

PROJECT = str(Path(__file__).resolve().parent.parent)


def engine_cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=timeout, env=engine_env(home, TRAINLENS_WORKERS="1"))


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


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


@pytest.mark.parametrize("name", ["unknown subcommand", "unknown field", "missing file", "unknown run id"])
def test_bad_arguments_in_a_real_process(trainlens_home, name):
    done = engine_cli(trainlens_home, *BAD_ARGUMENTS[name])
    _assert_one_line_error(done.returncode, done.stdout, done.stderr)
    assert not (trainlens_home / "trainlens.db").exists() or name == "unknown run id"  # nothing was queued
