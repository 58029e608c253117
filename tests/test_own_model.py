"""Explaining a model TrainLens did not train: torchvision architectures with safetensors weights, state dicts from
server paths, exported programs only from operator folders, and uploads refused before anything reads them."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save, save_file

from engine.explain.methods import explain, why_not
from engine.explain.own_model import (MODEL_DIRS_ENV, OwnModelError, Preparation, check_upload, exported_programs,
                                      from_exported, from_weights, state_from_path, state_from_upload)


class _WritesAFile:
    """A pickle payload: unpickling it creates a file (what a malicious .pt/.pt2 could do instead)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _tiny_resnet_state(classes: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=classes).state_dict()


def test_safetensors_weights_for_a_torchvision_architecture_are_explained_like_a_run():
    data = save(_tiny_resnet_state())
    own = from_weights("resnet18", state_from_upload("mine.safetensors", data),
                       Preparation(size=64, classes=("cat", "dog", "bird")), "mine.safetensors")
    assert own.classes == ("cat", "dog", "bird") and own.spec.size == 64
    x = torch.randn(1, 3, 64, 64)
    for method in ("saliency", "grad_cam", "deeplift", "guided_backprop"):
        assert why_not(own.model, method) is None
        assert explain(own.model, x, 1, method).shape == x.shape
    numbered = from_weights("resnet18", state_from_upload("w.safetensors", data), Preparation(size=64))
    assert numbered.classes == ("class 0", "class 1", "class 2")  # class count read from the classifier
    # safetensors sorts keys: the classifier is found by the architecture's order (SqueezeNet's is a 1x1 conv)
    squeeze = save(torchvision.models.squeezenet1_1(num_classes=5).state_dict())
    small = from_weights("squeezenet1_1", state_from_upload("s.safetensors", squeeze), Preparation(size=64))
    assert len(small.classes) == 5 and explain(small.model, x, 4, "grad_cam").shape == x.shape


def test_weights_that_do_not_fit_say_which_keys_and_shapes(tmp_path):
    with pytest.raises(OwnModelError, match=r"do not fit torchvision's resnet50: keys .* missing .* wrong shape"):
        from_weights("resnet50", _tiny_resnet_state(), Preparation())
    with pytest.raises(OwnModelError, match="4 class names given, the model has 3 outputs"):
        from_weights("resnet18", _tiny_resnet_state(), Preparation(size=64, classes=("a", "b", "c", "d")))
    # a state dict from a server path is read with weights_only=True
    path = tmp_path / "weights.pth"
    torch.save(_tiny_resnet_state(), path)
    assert set(state_from_path(path)) == set(_tiny_resnet_state())


def test_uploads_other_than_safetensors_are_refused_without_being_read(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_WritesAFile(str(marker)))
    for name in ("model.pt2", "model.pt", "weights.pkl", "disguised.safetensors"):
        with pytest.raises(OwnModelError):
            state_from_upload(name, payload)
    assert not marker.exists()  # the payload never ran
    with pytest.raises(OwnModelError, match="only safetensors files can be uploaded"):
        check_upload("model.pt2", b"PK\x03\x04" + b"\0" * 64)
    # and a pickle handed to the server-path reader is refused by weights_only=True, not run
    path = tmp_path / "evil.pth"
    path.write_bytes(payload)
    with pytest.raises(OwnModelError, match="evil.pth is not a readable state dict: the weights-only reader stopped "
                       "at '.+'. A file holding Python objects besides tensors could run code") as info:
        state_from_path(path)
    assert not marker.exists()
    # torch's own message advises retrying with weights_only=False, which would run the payload: never passed on
    assert "weights_only" not in str(info.value) and "False" not in str(info.value)
    path.write_bytes(pickle.dumps({"run": os.system}, protocol=2))  # a GLOBAL: torch suggests allowlisting it
    with pytest.raises(OwnModelError, match="stopped at 'Trying to load unsupported GLOBAL") as info:
        state_from_path(path)
    assert "safe_globals" not in str(info.value) and "trust" not in str(info.value)
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(OwnModelError, match=r"evil.pth is not a state dict torch can read \("):
        state_from_path(path)


def test_exported_programs_load_only_from_operator_folders(tmp_path, monkeypatch):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    allowed = tmp_path / "models"
    allowed.mkdir()
    program = allowed / "tiny.pt2"
    # a dynamic batch: Integrated Gradients and Occlusion send many copies of the image at once
    exported = torch.export.export(model, (torch.randn(2, 1, 16, 16),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(exported, str(program))
    static = allowed / "static.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 1, 16, 16),)), str(static))
    sidecar = json.dumps({"input_size": 16, "mean": [0.5], "std": [0.25], "classes": ["left", "right"]})
    (allowed / "tiny.json").write_text(sidecar)
    (allowed / "static.json").write_text(sidecar)
    elsewhere = tmp_path / "elsewhere.pt2"
    elsewhere.write_bytes(program.read_bytes())
    monkeypatch.delenv(MODEL_DIRS_ENV, raising=False)
    with pytest.raises(OwnModelError, match="not set on this server"):
        from_exported(program)
    monkeypatch.setenv(MODEL_DIRS_ENV, str(allowed))
    assert exported_programs() == [static.resolve(), program.resolve()]
    with pytest.raises(OwnModelError, match="dynamic batch"):
        from_exported(static)
    with pytest.raises(OwnModelError, match=f"only from the folders listed in {MODEL_DIRS_ENV}"):
        from_exported(elsewhere)
    own = from_exported(program)
    assert own.classes == ("left", "right") and own.spec.size == 16 and own.spec.channels == 1
    x = torch.randn(1, 1, 16, 16)
    torch.testing.assert_close(own.model(x), model(x))
    assert explain(own.model, x, 0, "integrated_gradients").shape == x.shape


def test_cli_explains_your_own_weights(tmp_path, capsys):
    from engine.cli import main

    weights = tmp_path / "mine.safetensors"
    save_file(_tiny_resnet_state(), str(weights))
    (tmp_path / "prep.json").write_text(json.dumps({"input_size": 64, "classes": ["cat", "dog", "bird"]}))
    image = tmp_path / "photo.png"
    Image.new("RGB", (80, 60), (200, 30, 30)).save(image)
    out = tmp_path / "map.png"
    assert main(["explain-model", str(image), "--arch", "resnet18", "--weights", str(weights), "--config",
                 str(tmp_path / "prep.json"), "--method", "grad_cam", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["predicted_class"] in ("cat", "dog", "bird") and out.is_file()
    assert main(["explain-model", str(image), "--arch", "resnet50", "--weights", str(weights), "--out",
                 str(out)]) == 2
    assert "do not fit torchvision's resnet50" in capsys.readouterr().err
    assert os.path.getsize(out) > 0
