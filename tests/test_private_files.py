"""What TrainLens keeps is its owner's alone (engine.paths: folders 0700, files 0600): the store and its WAL files,
its backups, checkpoints, uploaded datasets, logs and worker files. And uploads are stored once and bounded in total
size (engine.uploads), where they used to pile up for ever."""

from __future__ import annotations

import os
import stat
import time

import pytest

from engine import uploads
from engine.config import RunConfig
from engine.runs.store import Store


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_store_its_backups_checkpoints_uploads_and_logs_are_private(trainlens_home):
    import torch

    from engine.checkpoints import Checkpoint, epoch_path, save_checkpoint
    from engine.paths import logs_dir

    os.umask(0o022)  # the usual umask: without care, every file would be world-readable
    store = Store()
    run_id = store.create_run(RunConfig(), name="Ana's run")
    for part in ("", "-wal", "-shm"):
        assert mode(f"{store.path}{part}") == 0o600, part
    backup = store.backup()
    assert mode(backup) == 0o600 and mode(backup.parent) == 0o700
    path = epoch_path(run_id, 0)
    save_checkpoint(path, Checkpoint(config=RunConfig(), epoch=0, step=1, model={"w": torch.zeros(2)}))
    assert mode(path) == 0o600 and mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    name = uploads.save_upload(b"text,label\ngood,pos\nbad,neg\n", in_use=[])
    upload = trainlens_home / "data" / name
    assert mode(upload) == 0o600 and mode(upload.parent) == 0o700
    assert mode(logs_dir()) == 0o700


def test_a_store_made_world_readable_before_is_made_private_when_opened(trainlens_home):
    store = Store()
    store.close()
    os.chmod(store.path, 0o644)
    Store()
    assert mode(store.path) == 0o600


def test_an_upload_is_stored_once(trainlens_home):
    data = b"text,label\ngood,pos\nbad,neg\n"
    first = uploads.save_upload(data, in_use=[])
    assert uploads.save_upload(data, in_use=[]) == first and first.startswith("uploads/")
    assert len(list(uploads.uploads_dir().iterdir())) == 1


def test_uploads_no_run_uses_go_first_least_recently_used_and_used_ones_stay(trainlens_home, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_TOTAL_BYTES", 3000)
    names = []
    for index in range(3):
        names.append(uploads.save_upload(bytes([65 + index]) * 1000, in_use=[]))
        os.utime(trainlens_home / "data" / names[-1], (time.time() - 100 + index, time.time() - 100 + index))
    # the oldest is a run's data: kept; the next oldest, used by nobody, makes room
    newest = uploads.save_upload(b"D" * 1000, in_use=[names[0], "", "mnist"])
    left = {p.name for p in uploads.uploads_dir().iterdir()}
    assert left == {n.split("/")[1] for n in (names[0], names[2], newest)}
    with pytest.raises(uploads.UploadRefused, match="full of datasets that runs still use; delete old runs"):
        uploads.save_upload(b"E" * 2500, in_use=[names[0], names[2], newest])
    assert {p.name for p in uploads.uploads_dir().iterdir()} == left  # nothing a run reads was removed
