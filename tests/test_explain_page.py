"""The Explain page under Streamlit's AppTest: runs and checkpoints written here, images uploaded from assets/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest
from ui_helpers import clear_app_caches

from engine.checkpoints import INITIAL_EPOCH, Checkpoint, epoch_path, initial_path, save_checkpoint
from engine.config import RunConfig
from engine.models import build_model

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "views" / "explain.py")
ASSETS = Path(__file__).resolve().parent.parent / "assets"
MNIST_STATS = {"mean": [0.1307], "std": [0.3081]}  # recorded in the checkpoint: no dataset load needed


def make_run(model_name: str = "convnet", epochs: int = 2) -> str:
    from engine.runs.store import Store

    config = RunConfig(dataset="mnist5k", model=model_name, hidden=16, epochs=epochs)
    run_id = Store().create_run(config)
    torch.manual_seed(0)
    model = build_model(model_name, channels=1, size=28, num_classes=10, hidden=16)
    save_checkpoint(initial_path(run_id), Checkpoint(config=config, epoch=INITIAL_EPOCH, step=0,
                                                     model=model.state_dict(), extra=MNIST_STATS))
    for epoch in range(epochs):
        with torch.no_grad():  # a different model at every epoch, as training would leave
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        save_checkpoint(epoch_path(run_id, epoch), Checkpoint(config=config, epoch=epoch, step=epoch + 1,
                                                              model=model.state_dict(), extra=MNIST_STATS))
    return run_id


def page() -> AppTest:
    clear_app_caches()  # the cached Store points at the previous test's TRAINLENS_HOME
    return AppTest.from_file(PAGE, default_timeout=60)


def heatmaps(at: AppTest) -> list[str]:
    """The heatmaps' captions without the class they explain ("why 3: heatmap (absolute)" -> "heatmap (absolute)")."""
    return [c.split(": ", 1)[1] for image in at.image for c in image.captions if ": heatmap" in c]


def run_until(at: AppTest, done, timeout: float = 40.0) -> AppTest:
    """Re-run the page (as the polling fragment would) until `done(at)` or the timeout."""
    deadline = time.monotonic() + timeout
    while not done(at) and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    return at


def test_without_runs_the_page_says_what_to_do():
    at = page().run()
    assert not at.exception
    assert "No run has a checkpoint yet" in at.info[0].value


def test_upload_two_methods_then_a_background_one():
    make_run()
    at = page().run()
    assert "Upload an image" in at.info[0].value
    at.file_uploader(key="explain_upload").upload("my digit.png", (ASSETS / "digit_2_light_paper.png").read_bytes(),
                                                  "image/png")
    at.run()
    at.multiselect(key="explain_methods").set_value(["saliency", "grad_cam"])
    at.run()
    assert not at.exception, at.exception
    assert heatmaps(at) == ["heatmap (absolute)", "heatmap (positive)"]  # each method's natural view
    assert any("Inverted (light background)" in c.value for c in at.caption)  # shown to the user
    assert any(image.captions == ["as the model sees it"] for image in at.image)
    assert len(at.get("plotly_chart")) >= 1  # the top-k probabilities
    assert any(table.value.index.tolist()[:2] == ["infidelity", "sensitivity_max"] for table in at.table)
    # a heavy method goes to the background thread and appears when done
    at.multiselect(key="explain_methods").set_value(["saliency", "grad_cam", "integrated_gradients"])
    at.radio(key="explain_sign").set_value("all")
    at.run()
    run_until(at, lambda a: len(heatmaps(a)) == 3)
    assert heatmaps(at) == ["heatmap (all)"] * 3


def test_a_bad_upload_gets_a_readable_error():
    make_run()
    at = page().run()
    at.file_uploader(key="explain_upload").upload("notes.png", b"this is not an image", "image/png")
    at.run()
    assert not at.exception
    assert "not an image that can be read" in at.error[0].value


def test_links_open_a_validation_sample_of_a_run():
    make_run()
    run_id = make_run()  # the newer run is not the default: the link must select it
    at = page()
    at.query_params["run"] = run_id
    at.query_params["sample"] = "3"
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="explain_run").value == run_id
    assert at.radio(key="explain_image_source").value == "Validation sample"
    assert any("Validation image \\#3, labelled" in c.value for c in at.caption)  # markdown-escaped: shows "#3"
    assert len(heatmaps(at)) == 1  # saliency inline; integrated gradients in the background
    run_until(at, lambda a: len(heatmaps(a)) == 2)
    assert len(heatmaps(at)) == 2


def test_grad_cam_on_an_mlp_says_it_does_not_apply():
    make_run("mlp")
    at = page().run()
    at.radio(key="explain_image_source").set_value("Example image").run()
    at.multiselect(key="explain_methods").set_value(["grad_cam", "saliency"]).run()
    assert not at.exception
    assert "does not apply to this model" in at.info[0].value
    assert heatmaps(at) == ["heatmap (absolute)"]


def test_across_training_and_sanity_check_tabs():
    run_id = make_run(epochs=3)
    at = page().run()
    at.radio(key="explain_image_source").set_value("Example image").run()
    at.multiselect(key="explain_methods").set_value(["saliency"]).run()
    slider = at.select_slider(key=f"explain_epoch_{run_id}")
    # from the untrained model (saved before training), numbered as everywhere else in the app
    assert list(slider.options) == ["before training", "after epoch 1", "after epoch 2", "after epoch 3"]
    assert slider.value == 2
    assert any(", after epoch 3: predicts" in c for image in at.image for c in image.captions)
    slider.set_value(-1).run()
    assert any(", before training: predicts" in c for image in at.image for c in image.captions)
    at.button(key="explain_sanity_run").click().run()
    assert not at.exception, at.exception
    verdicts = [e.value for e in (*at.success, *at.error) if "Mean rank correlation" in e.value]
    assert len(verdicts) == 1 and "below 0.65" in verdicts[0]
    stages = [c for image in at.image for c in image.captions if ": ρ " in c]
    assert stages[0] == "trained: ρ 1.00" and any(c.startswith("fc3 random: ρ ") for c in stages)


def test_pretrained_model_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    at = page()
    at.run()
    at.radio(key="explain_source").set_value("Pretrained ImageNet model").run()
    assert not at.exception
    assert "resnet18-f37072fd.pth" in at.info[0].value


def test_chosen_methods_survive_an_upload_and_each_picture_is_explained_for_its_own_prediction(monkeypatch):
    from ui_helpers import fresh_app

    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    make_run()
    at = fresh_app()
    at.run()
    at.switch_page("views/explain.py").run()
    at.file_uploader(key="explain_upload").upload("one.png", (ASSETS / "digit_7.png").read_bytes(), "image/png")
    at.run()
    at.multiselect(key="explain_methods").set_value(["saliency", "input_x_gradient"]).run()
    first = at.selectbox(key="explain_target")
    predicted = first.value
    first.set_value((predicted + 1) % 10).run()  # another class for this picture: it holds while it is shown
    assert at.selectbox(key="explain_target").value == (predicted + 1) % 10
    why = [c for image in at.image for c in image.captions if c.startswith("why ")]
    assert len(why) == 5 and all(c.startswith(f"why {(predicted + 1) % 10}") for c in why)  # each map names its class
    # a look at another page (Streamlit forgets the widgets it did not draw), then the next upload
    at.switch_page("views/runs.py").run()
    at.switch_page("views/explain.py").run()
    at.file_uploader(key="explain_upload").upload("two.png", (ASSETS / "digit_2_light_paper.png").read_bytes(),
                                                  "image/png")
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="explain_methods").value == ["saliency", "input_x_gradient"]
    said = next(m.value for m in at.markdown if m.value.startswith("#### The model says: "))
    target = at.selectbox(key="explain_target")
    assert "predicted" in target.format_func(target.value)  # a new picture: its own prediction
    assert said.removeprefix("#### The model says: ").startswith(f"{target.value} (")


@pytest.mark.parametrize("damage", ["pickle bytes", "a 2^63 header", "a link to /dev/zero"])
def test_an_unreadable_checkpoint_is_the_command_line_s_one_line_not_a_crash(damage):
    import pickle
    import struct

    run_id = make_run("mlp", epochs=1)
    path = epoch_path(run_id, 0)
    if damage == "pickle bytes":
        path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    elif damage == "a 2^63 header":
        path.write_bytes(struct.pack("<Q", 2**63 - 1) + b"{}")
    else:
        path.unlink()
        path.symlink_to("/dev/zero")
    at = page().run()
    assert not at.exception, at.exception
    shown = [e.value.replace("\\", "") for e in at.error]
    assert len(shown) == 1 and shown[0].startswith("This checkpoint cannot be explained: checkpoint ")
    assert "is not a readable TrainLens checkpoint" in shown[0]


def test_an_unreadable_checkpoint_over_training_is_named_in_its_tab():
    run_id = make_run("mlp", epochs=2)
    initial_path(run_id).unlink()
    initial_path(run_id).symlink_to("/dev/zero")  # "before training" cannot be read; the others can
    at = page().run()
    at.radio(key="explain_image_source").set_value("Example image").run()
    at.multiselect(key="explain_methods").set_value(["saliency"]).run()
    assert not at.exception, at.exception
    shown = [e.value.replace("\\", "") for e in at.error]
    assert any(s.startswith("The checkpoints over training cannot all be read: checkpoint ") and "initial.safetensors"
               in s and "not a regular file" in s for s in shown), shown
