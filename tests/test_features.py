"""What the network learned (engine.diagnostics.features, app/charts/features.py, the Run report's section): a trained
convnet's penultimate features separate the validation digits measurably better than its untrained ones (k-NN
accuracy, after > before), the head's answers on the captured features are the model's own, the first layer's
filters come out as images, and the report shows the layouts side by side with their k-NN accuracies and the
nearest neighbours of a chosen image in feature and pixel space.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from app.charts.features import filters_figure, image_strip, layout_figure
from engine.checkpoints import INITIAL_EPOCH, load_run_model
from engine.config import RunConfig
from engine.data.loading import load_run_split, normalize
from engine.diagnostics.evaluate import predict
from engine.diagnostics.features import (feature_layout, first_layer_filters, knn_accuracy, nearest,
                                         penultimate_features)
from engine.paths import checkpoint_dir
from engine.records import RunStatus
from engine.train import MemorySink, train

CONFIG = RunConfig(dataset="mnist5k", model="convnet", epochs=2, batch_size=32, train_limit=1000,
                   layer_stats_every=0).validate()
RUN = "features0001"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The run's checkpoint folder, trained once for the module."""
    home = tmp_path_factory.mktemp("features_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINLENS_HOME", str(home))
        assert train(CONFIG, MemorySink(), run_id=RUN).status == "completed"
    return home / "checkpoints" / RUN


@pytest.fixture
def trained(trainlens_home, checkpoints) -> str:
    """RUN's checkpoints in this test's home (a copy: each test has a store of its own)."""
    import shutil

    shutil.copytree(checkpoints, checkpoint_dir(RUN), dirs_exist_ok=True)
    return RUN


def sample(count: int = 400):
    split = load_run_split(CONFIG)
    return normalize(split.val_x[:count], split.mean, split.std), split.val_y[:count]


def test_trained_features_separate_the_classes_better_than_untrained_ones(trained):
    x, y = sample()
    before = feature_layout(load_run_model(trained, INITIAL_EPOCH)[0], x, y)
    after = feature_layout(load_run_model(trained, "best")[0], x, y)
    assert before.features.shape == after.features.shape == (400, 84)  # what fc3 reads
    assert after.knn > before.knn + 0.03, (before.knn, after.knn)
    assert before.coords.shape == (400, 2) and np.isfinite(after.coords).all()
    model = load_run_model(trained, "best")[0]
    assert (after.predicted == predict(model, x).argmax(1).numpy()).all()  # the head on the codes = the model


def test_knn_and_nearest_on_features_whose_answer_is_known():
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0], [0.1, 0.9], [0.05, 0.95]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert knn_accuracy(features, labels, k=2) == 1.0
    assert nearest(features, 0, 2) == [2, 1]  # itself excluded, nearest first


def test_first_layer_filters_are_images_for_conv_and_mlp_models():
    convnet = load_model("convnet")
    assert first_layer_filters(convnet, 1, 28).shape == (6, 5, 5)
    mlp = load_model("mlp")
    assert first_layer_filters(mlp, 1, 28).shape == (32, 28, 28)  # the first 32 weight rows, as 28x28 images
    assert penultimate_features(mlp, torch.zeros(3, 1, 28, 28)).shape == (3, 128)


def load_model(name: str):
    from engine.models import model_from_config

    return model_from_config(CONFIG.with_updates(model=name), 1, 28, 10)


def test_the_figures_mark_mistakes_and_keep_each_points_index():
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]])
    figure = layout_figure(coords, np.array([0, 1, 1]), np.array([0, 1, 0]), ["zero", "one"])
    one = [trace for trace in figure.data if trace.name == "one"]
    assert [(list(t.customdata), t.marker.symbol, t.showlegend) for t in one] == [([1], "circle", True),
                                                                                  ([2], "x", False)]
    assert "× misclassified" in {trace.name for trace in figure.data}
    grid = filters_figure(np.random.default_rng(0).normal(size=(6, 5, 5))).data[0].z
    assert np.nanmax(np.abs(grid)) == pytest.approx(1.0)
    assert image_strip(np.zeros((3, 4, 4))).shape == (4, 3 * 4 + 2 * 2)


def test_the_run_report_shows_the_layouts_the_knn_accuracies_and_the_neighbours(trained, monkeypatch):
    from ui_helpers import fresh_app

    from engine.runs.store import Store

    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    store = Store()
    run_id = store.create_run(CONFIG, name="digits")
    store.conn.execute("UPDATE runs SET run_id=? WHERE run_id=?", (RUN, run_id))  # the checkpoints' run
    store.update_status(RUN, RunStatus.COMPLETED)
    at = fresh_app()
    at.query_params["run"] = RUN
    at.run()
    at.switch_page("views/run_report.py").run()
    assert not at.exception
    texts = " ".join(m.value for m in at.markdown)
    assert "**Before training** · k-NN accuracy of the features **" in texts
    assert "**After training** · k-NN accuracy of the features **" in texts
    assert "**The first layer's filters**" in texts and "**Nearest neighbours of example 0**" in texts
    at.number_input(key="features_example").set_value(7).run()
    assert not at.exception
    assert "**Nearest neighbours of example 7**" in " ".join(m.value for m in at.markdown)
    captions = [c.value for c in at.caption]
    assert any("k-NN on the raw pixels" in c for c in captions)


def test_a_run_of_a_class_subset_with_adapters_is_rebuilt_from_its_checkpoints(trainlens_home):
    """load_run_model (the Run report, Explain) rebuilds the run's own model: 5 outputs for classes 5-9, LoRA layers."""
    config = CONFIG.with_updates(epochs=1, train_limit=300, classes="5-9", adapter="lora", lora_rank=2)
    train(config, MemorySink(), run_id="subsetlora01")
    for which in (INITIAL_EPOCH, "best"):
        model, _, info, _ = load_run_model("subsetlora01", which)
        assert info.classes == ("5", "6", "7", "8", "9") and model.fc3.out_features == 5
        assert hasattr(model.conv1, "lora_a")


def test_the_tsne_layout_is_computed_in_the_background_then_shown(trained, monkeypatch):
    from ui_helpers import chart_by_key, figure_spec, fresh_app

    from engine.runs.store import Store

    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    monkeypatch.setattr("app.report.features.SAMPLE", 120)  # t-SNE of 120 points: a second, not ten
    store = Store()
    run_id = store.create_run(CONFIG, name="digits")
    store.conn.execute("UPDATE runs SET run_id=? WHERE run_id=?", (RUN, run_id))
    store.update_status(RUN, RunStatus.COMPLETED)
    at = fresh_app()
    at.query_params["run"] = RUN
    at.run()
    at.switch_page("views/run_report.py").run()
    at.button_group(key="features_method").set_value("t-SNE").run()
    assert not at.exception
    deadline = time.monotonic() + 120
    while "t-SNE 1" not in json.dumps(figure_spec(chart_by_key(at, "features_layout_after"))["layout"]):
        assert time.monotonic() < deadline, "the t-SNE layout did not arrive"
        time.sleep(1)
        at.run()
        assert not at.exception
    assert "neighbours kept together" in " ".join(c.value for c in at.caption)


def test_a_text_run_is_laid_out_by_its_sentence_codes_with_the_sentence_on_hover(trainlens_home):
    from app.report.features import learned

    text = RunConfig(dataset="sentiment", model="gru", hidden=16, embed_dim=16, epochs=1, train_limit=300,
                     layer_stats_every=0).validate()
    train(text, MemorySink(), run_id="textlayout01")
    data = learned.__wrapped__("textlayout01", "best", 0.0)  # the computation, without Streamlit's cache
    assert data["pixels"] is None and data["before"]["filters"] is None  # no images: no filters, no pixel space
    assert data["classes"] == ["negative", "positive"] and len(data["sentences"]) == len(data["labels"])
    figure = layout_figure(data["after"]["coords"], data["labels"], data["after"]["predicted"], data["classes"],
                           hover=data["sentences"])
    first = figure.data[0]
    assert first.text[0] == data["sentences"][first.customdata[0]][:120]
    assert first.hovertemplate.startswith("%{text}<br>true ")
