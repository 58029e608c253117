"""Hostile input to the command line: each used to escape as a traceback. Every one is now one line on stderr and
exit 2 (bad input) or 1 (an operation that failed), checked in a real process.

Crafted checkpoint headers, checkpoints whose tensors do not fit their model, deeply nested TOML, an oversized
config, `--out` a folder or /dev/full, a 3 GB image (refused before it is read), output piped into `head`.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import engine_env

from engine.checkpoints import epoch_path
from engine.config import RunConfig
from engine.runs.store import Store
from engine.train import MemorySink, train

PROJECT = str(Path(__file__).resolve().parent.parent)


def cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120, env=engine_env(home, TRAINLENS_WORKERS="0"), input=stdin)


def assert_one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def trained_run(trainlens_home) -> str:
    """A run with one real epoch checkpoint, trained here in a second."""
    config = RunConfig(model="mlp", hidden=16, depth=1, epochs=1, train_limit=64, batch_size=32, val_fraction=0.05,
                       device="cpu", layer_stats_every=0).validate()
    store = Store()
    run_id = store.create_run(config, name="trained")
    train(config, MemorySink(), lambda: False, run_id=run_id)
    store.update_status(run_id, "completed")
    return run_id


@pytest.fixture
def digit_png(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(path)
    return path


@pytest.mark.slow
def test_a_crafted_checkpoint_header_is_one_line(trainlens_home, trained_run, digit_png, tmp_path):
    epoch_path(trained_run, 0).write_bytes(struct.pack("<Q", 2**63 - 1) + b"{}")  # a header claiming 8 EiB
    result = cli(trainlens_home, "explain", trained_run, str(digit_png), "--checkpoint", "1", "--out",
                 str(tmp_path / "x.png"))
    assert_one_line(result, 2, "not a readable TrainLens checkpoint")


@pytest.mark.slow
def test_a_checkpoint_whose_tensors_do_not_fit_is_one_line(trainlens_home, trained_run, digit_png, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = epoch_path(trained_run, 0)
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {key: f.get_tensor(key) for key in f.keys()}
    first = next(key for key in tensors if key.startswith("model.") and tensors[key].dim() == 2)
    tensors[first] = tensors[first][:, :3].contiguous()  # a hand-edited file: the shape no longer fits
    save_file(tensors, str(path), metadata=metadata)
    result = cli(trainlens_home, "explain", trained_run, str(digit_png), "--checkpoint", "1", "--out",
                 str(tmp_path / "x.png"))
    assert_one_line(result, 2, "does not fit the model")


@pytest.mark.slow
def test_explain_outputs_that_cannot_be_written(trainlens_home, trained_run, digit_png, tmp_path):
    assert_one_line(cli(trainlens_home, "explain", trained_run, str(digit_png), "--out", str(tmp_path)), 2,
                    "is a folder")
    assert_one_line(cli(trainlens_home, "explain", trained_run, str(digit_png), "--out", "/dev/full"), 1)


@pytest.mark.slow
def test_a_3_gb_image_is_refused_before_it_is_read(trainlens_home, trained_run, tmp_path):
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: 3 GB on paper, nothing on disk
        f.truncate(3 * 2**30)
    started = time.time()
    result = cli(trainlens_home, "explain", trained_run, str(huge), "--out", str(tmp_path / "x.png"))
    assert_one_line(result, 2, "bytes")
    assert time.time() - started < 30


@pytest.mark.parametrize("text, word", [("a = " + "[" * 5000 + "]" * 5000, "deeply"),
                                        ("name = '" + "x" * 200_000 + "'", "at most")],
                         ids=["deeply nested TOML", "oversized config"])
@pytest.mark.slow
def test_hostile_config_files(trainlens_home, tmp_path, text, word):
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert_one_line(cli(trainlens_home, "train", "--config", str(path)), 2, word)


@pytest.mark.slow
def test_a_name_too_long_and_a_data_dir_outside_the_roots(trainlens_home):
    assert_one_line(cli(trainlens_home, "train", "--name", "n" * 10_000), 2, "at most 120")
    assert_one_line(cli(trainlens_home, "train", "--set", "dataset=mnist", "--set", "data_dir=/etc"), 2,
                    "outside the allowed data folders")
    assert not Path("/etc/MNIST").exists()


@pytest.mark.slow
def test_every_read_command_piped_into_head_ends_quietly(trainlens_home, trained_run):
    for args in (["runs"], ["show", trained_run], ["metrics", trained_run, "--csv"], ["metrics", trained_run, "--json"]):
        result = subprocess.run(f"{shlex_join([sys.executable, '-m', 'engine', *args])} | head -c 10",
                                shell=True, cwd=PROJECT, capture_output=True, text=True, timeout=120,
                                env=engine_env(trainlens_home, TRAINLENS_WORKERS="0"))
        assert "Traceback" not in result.stderr and "Error" not in result.stderr, (args, result.stderr)


def shlex_join(parts: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(part) for part in parts)


def test_a_config_that_is_a_pipe_or_a_device_is_refused_without_reading_it(trainlens_home, tmp_path, capsys):
    import os

    from engine.cli import main

    os.mkfifo(tmp_path / "run.toml")  # reading it would wait for a writer for ever
    (tmp_path / "zero.toml").symlink_to("/dev/zero")
    for name, kind in (("run.toml", "a pipe"), ("zero.toml", "a device")):
        assert main(["train", "--config", str(tmp_path / name)]) == 2
        assert capsys.readouterr().err.strip() == (f"error: --config {tmp_path / name}: not a regular file ({kind}); "
                                                   "a run's config must be a plain file")
    assert Store().list_runs().empty
