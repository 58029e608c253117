"""`run.log_model` (issue 24): a script's model handed to the Explain page, weights as safetensors only. A
TrainLens zoo model becomes an engine checkpoint of the script's run (the page and `trainlens explain` treat the
run like an engine run); a torchvision classifier is explained as "your own model"; any other model gets one line
pointing to `explain-model`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest
from ui_helpers import clear_app_caches

import trainlens
from engine.models import build_model
from engine.records import LOGGED_MODEL

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "views" / "explain.py")
ASSETS = Path(__file__).resolve().parent.parent / "assets"

pytestmark = pytest.mark.timeout(180)


def explain_page(run_id: str) -> AppTest:
    clear_app_caches()
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.query_params["run"] = run_id
    return at.run()


def upload_digit(at: AppTest) -> AppTest:
    at.file_uploader(key="explain_upload").upload("digit.png", (ASSETS / "digit_2_light_paper.png").read_bytes(),
                                                  "image/png")
    at.run()
    at.multiselect(key="explain_methods").set_value(["saliency"])
    return at.run()


def test_a_zoo_model_from_a_script_is_explained_like_an_engine_run(capsys):
    with trainlens.init(name="my convnet") as run:
        model = build_model("mlp", channels=1, size=28, num_classes=10, hidden=16)
        run.log({"loss": 1.0})
        path = run.log_model(model, dataset="mnist5k", hidden=16, mean=[0.1307], std=[0.3081])
    from safetensors import safe_open

    with safe_open(path, framework="pt") as weights:  # a safetensors file, never a pickle
        assert any(k.startswith("model.") for k in weights.keys())
    assert run.store.get_artifact(run.run_id, LOGGED_MODEL)["kind"] == "zoo"
    at = upload_digit(explain_page(run.run_id))
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="explain_run").value == run.run_id
    assert any("mlp on mnist5k" in c.value for c in at.caption)
    assert any("heatmap" in c for image in at.image for c in image.captions)  # "why 2: heatmap (...)"
    from engine.cli import main

    out = Path(path).parent / "saliency.png"
    assert main(["explain", run.run_id, str(ASSETS / "digit_2_light_paper.png"), "--method", "saliency",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 0


def test_a_torchvision_classifier_from_a_script_is_explained_as_its_own_model(capsys):
    import torchvision

    with trainlens.init(name="tiny resnet") as run:
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=3)
        run.log_model(model, input_size=32, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], classes=["a", "b", "c"])
    record = run.store.get_artifact(run.run_id, LOGGED_MODEL)
    assert (record["kind"], record["architecture"]) == ("torchvision", "resnet18")
    at = upload_digit(explain_page(run.run_id))
    assert not at.exception, [e.value for e in at.exception]
    assert any("resnet18 saved by the run's script" in c.value for c in at.caption)
    assert any("heatmap" in c for image in at.image for c in image.captions)  # "why 2: heatmap (...)"
    from engine.cli import main

    assert main(["explain", run.run_id, str(ASSETS / "digit_2_light_paper.png"), "--out", "x.png"]) == 2
    assert "explain-model IMAGE --arch resnet18 --weights" in capsys.readouterr().err


def test_other_models_get_one_line_pointing_to_explain_model():
    class Net(torch.nn.Module):  # the pytorch/examples style: a model of the script's own
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

    with trainlens.init(name="own net") as run:
        with pytest.raises(trainlens.TrainLensError, match="trainlens explain-model") as raised:
            run.log_model(Net())
        assert "\n" not in str(raised.value)
        with pytest.raises(trainlens.TrainLensError, match="dataset it was trained on"):
            run.log_model(build_model("convnet", channels=1, size=28, num_classes=10))
        with pytest.raises(trainlens.TrainLensError, match="does not match"):
            run.log_model(build_model("mlp", channels=1, size=28, num_classes=10, hidden=32), dataset="mnist5k")
