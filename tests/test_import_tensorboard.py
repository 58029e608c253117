"""`trainlens import-tensorboard` (issue 24): event files written by torch's own SummaryWriter round-trip into
script runs (same tags, steps and values; hparams as the config), one run per run folder, and a second import of
the same files adds nothing. Skipped when the optional `tensorboard` package is missing (requirements-dev.txt)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("tensorboard")

from engine.cli import main  # noqa: E402
from engine.runs.store import Store  # noqa: E402


def write_logs(logdir, runs=("adam", "sgd")) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Event files from torch.utils.tensorboard.SummaryWriter, one folder per run; returns what was written."""
    from torch.utils.tensorboard import SummaryWriter

    written = {}
    for index, name in enumerate(runs):
        writer = SummaryWriter(str(logdir / name))
        series = {"Loss/train": [], "Accuracy/test": []}
        for step in range(0, 50, 5):
            loss, accuracy = 2.0 / (step + 1 + index), 0.5 + step / 100
            writer.add_scalar("Loss/train", loss, step)
            writer.add_scalar("Accuracy/test", accuracy, step)
            series["Loss/train"].append((step, loss))
            series["Accuracy/test"].append((step, accuracy))
        writer.add_histogram("weights", np.array([1.0, 2.0, 3.0]), 10)  # not a scalar: left out
        writer.add_hparams({"lr": 0.01 * (index + 1), "optimizer": name}, {"hparam/accuracy": 0.9})
        writer.close()
        written[name] = series
    return written


def test_event_files_round_trip_with_tags_steps_values_and_hparams(tmp_path, capsys):
    written = write_logs(tmp_path / "logs")
    assert main(["import-tensorboard", str(tmp_path / "logs"), "--group", "tb"]) == 0
    out = capsys.readouterr().out
    assert out.count("imported as run") == 2, out  # the add_hparams folders joined their runs
    store = Store()
    runs = store.list_runs()
    assert sorted(runs["name"]) == ["adam", "sgd"] and set(runs["group"]) == {"tb"}
    assert set(runs["status"]) == {"completed"} and set(runs["kind"]) == {"script"}
    for row in runs.itertuples():
        metrics = store.get_metrics(row.run_id)
        for tag, points in written[row.name].items():
            got = metrics[metrics["key"] == tag]
            assert list(got["step"]) == [s for s, _ in points]
            assert list(got["value"]) == pytest.approx([v for _, v in points], rel=1e-6)  # float32 in the file
        assert "weights" not in set(metrics["key"]) and "hparam/accuracy" in set(metrics["key"])
        config = store.get_run(row.run_id)["config"]
        assert config["optimizer"] == row.name and config["lr"] == pytest.approx(0.01 * (1 + (row.name == "sgd")))
        assert store.script_info(row.run_id)["source"] == str((tmp_path / "logs" / row.name).resolve())
    assert sorted(runs["cfg.optimizer"]) == ["adam", "sgd"]  # Compare can group by it


def test_a_second_import_adds_nothing_and_changed_files_replace_their_run(tmp_path, capsys):
    write_logs(tmp_path / "logs", runs=("one",))
    assert main(["import-tensorboard", str(tmp_path / "logs")]) == 0
    store = Store()
    first = store.list_runs()
    rows = store.count_metrics()
    capsys.readouterr()
    assert main(["import-tensorboard", str(tmp_path / "logs")]) == 0
    assert "already imported" in capsys.readouterr().out
    assert len(store.list_runs()) == 1 and store.count_metrics() == rows
    event = next(p for p in (tmp_path / "logs" / "one").iterdir() if "tfevents" in p.name)
    os.utime(event, (1, 1))  # the file changed (a run that went on training)
    assert main(["import-tensorboard", str(tmp_path / "logs")]) == 0
    assert "replaced the earlier import" in capsys.readouterr().out
    again = store.list_runs()
    assert len(again) == 1 and again["run_id"].iloc[0] != first["run_id"].iloc[0] and store.count_metrics() == rows


def test_bad_folders_are_one_line(tmp_path, capsys):
    assert main(["import-tensorboard", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["import-tensorboard", str(tmp_path / "empty")]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err
