"""Explanations a class can trust: Grad-CAM placed by receptive fields, the OOD warning, the calibrated sanity
check and the checkpoint before training, on a convnet trained here for a few seconds on mnist5k."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerGradCam
from PIL import Image
from sklearn.datasets import load_sample_image
from explain_helpers import trained_on

from engine.checkpoints import INITIAL_EPOCH, history_epochs, initial_path, load_checkpoint, resolve
from engine.data.loading import normalize
from engine.datasets import dataset_info
from engine import sanity_check as sanity
from engine.explain.geometry import Geometry, place, trace_geometry
from engine.explain.images import decode_image, input_spec
from engine.explain.methods import METHODS, explain
from engine.explain.ood import calibrate_on_split
from engine.explain.quality import mask_score, randomization_check
from engine.explain.reading import blank_note
from engine.models import build_model

N_IMAGES = 24


@pytest.fixture(scope="module")
def digits():
    """A convnet trained on mnist5k for a few seconds (about 93% validation accuracy), with its split."""
    model, split, val_x, correct = trained_on("mnist5k", steps=300, batch_size=64, n_val=300, at_least=0.85)
    return model, split, val_x, torch.where(correct)[0][:N_IMAGES].tolist()


def test_geometry_of_the_zoo_and_of_torchvision_layers():
    # unpadded 5x5 convs: cell 0 of the convnet's conv2 is centred on pixel 2 + 0.5 + 2 * 2 = 6.5, 2 px apart
    convnet = build_model("convnet", channels=1, size=28, num_classes=10)
    assert trace_geometry(convnet, torch.zeros(1, 1, 28, 28), convnet.target_layer) == Geometry(6.5, 6.5, 2, 2)
    convnet32 = build_model("convnet", channels=3, size=32, num_classes=10)
    assert trace_geometry(convnet32, torch.zeros(1, 3, 32, 32), convnet32.target_layer) == Geometry(6.5, 6.5, 2, 2)
    # padded 3x3 convs keep centres; two stride-2 stages: cells every 4 px from pixel 0 (a residual sum included)
    resnet = build_model("resnet", channels=3, size=32, num_classes=10, width=4, depth=1)
    assert trace_geometry(resnet, torch.zeros(1, 3, 32, 32), resnet.target_layer) == Geometry(0, 0, 4, 4)
    # torchvision's ResNet-18: stride-2 7x7 conv and a stride-2 max pool before layer1: layer4 cells every 32 px
    resnet18 = torchvision.models.resnet18(weights=None).eval()
    assert trace_geometry(resnet18, torch.zeros(1, 3, 224, 224), resnet18.layer4) == Geometry(0, 0, 32, 32)


def test_a_cell_lands_over_its_receptive_field_centre_not_stretched_to_the_border():
    cam = torch.zeros(1, 1, 8, 8)
    cam[0, 0, 0, 7] = 1.0  # top-right cell of the convnet's 8x8 map: centred on row 6.5, column 6.5 + 14 = 20.5
    placed = place(cam, Geometry(6.5, 6.5, 2, 2), (28, 28))[0, 0]
    peak_rows, peak_cols = torch.where(placed > placed.max() - 1e-5)
    assert set(peak_rows.tolist()) == {6, 7} and set(peak_cols.tolist()) == {20, 21}
    assert placed[:, :4].abs().sum() == 0 and placed[:, 24:].abs().sum() == 0  # nothing in the empty margins
    stretched = F.interpolate(cam, size=(28, 28), mode="bilinear")[0, 0]
    assert int(torch.where(stretched == stretched.max())[1][0]) >= 25  # the old way: pushed to the border


def test_grad_cam_values_are_the_layer_cells_at_their_centres():
    model = build_model("resnet", channels=1, size=16, num_classes=3, width=4, depth=1).eval()
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    raw = LayerGradCam(model, model.target_layer).attribute(x, target=1, relu_attributions=True)  # [1, 1, 4, 4]
    ours = explain(model, x, 1, "grad_cam").sum(dim=1)
    torch.testing.assert_close(ours[0, ::4, ::4], raw[0, 0])  # cells centred every 4 px from pixel 0


def test_grad_cam_points_at_the_ink_of_digits(digits):
    model, split, val_x, keep = digits
    ink = split.val_x[:300].mean(1) > 0.5
    placed, stretched, guided, chance = [], [], [], []
    for i in keep:
        x, target = val_x[i:i + 1], int(split.val_y[i])
        placed.append(mask_score(explain(model, x, target, "grad_cam"), ink[i]).share)
        guided.append(mask_score(explain(model, x, target, "guided_grad_cam"), ink[i]).share)
        cam = LayerGradCam(model, model.target_layer).attribute(x, target=target, relu_attributions=True)
        stretched.append(mask_score(F.interpolate(cam, size=(28, 28), mode="bilinear"), ink[i]).share)
        chance.append(mask_score(torch.ones(1, 28, 28), ink[i]).chance)
    # measured: placed about 44%, guided 51%, stretched 14% (chance), chance 15%
    assert np.mean(placed) > 2 * np.mean(chance)
    assert np.mean(guided) > 2 * np.mean(chance)
    assert np.mean(placed) > np.mean(stretched) + 0.15


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_unfamiliar_inputs_are_flagged_and_digits_are_not(digits):
    model, split, _, _ = digits
    info = dataset_info("mnist5k")
    spec = input_spec(info.name, info.channels, info.size, split.mean, split.std, info.light_background)
    detector = calibrate_on_split(model, spec, split)
    assert detector.false_alarms <= 0.01
    # training digits were not used for the calibration: they must pass
    flagged = [detector.score(model, spec.prepare_pixels(split.train_x[i]), split.train_x[i]).unfamiliar
               for i in range(100)]
    assert np.mean(flagged) <= 0.02
    rng = np.random.default_rng(0)
    others = {"photo": load_sample_image("china.jpg"), "noise": (rng.random((64, 64, 3)) * 255).astype(np.uint8),
              "blank page": np.full((64, 64, 3), 255, np.uint8)}
    for name, array in others.items():
        prepared = spec.prepare(decode_image(_png(array)))
        report = detector.score(model, prepared.inputs, prepared.pixels)
        assert report.unfamiliar, name
        assert "unlike anything the model was trained on" in report.message()


def test_sanity_check_separates_gradients_and_ig_from_guided_backprop(digits):
    # Adebayo et al. (2018): gradients and Integrated Gradients change with the weights, Guided Backprop hardly
    model, split, val_x, keep = digits
    black = normalize(torch.zeros(1, 1, 28, 28), split.mean, split.std)
    survival = {}
    for method in ("saliency", "integrated_gradients", "guided_backprop"):
        params = {"baseline": black, "n_steps": 16} if method == "integrated_gradients" else {}
        values = [sanity.survival(randomization_check(model, val_x[i:i + 1], int(split.val_y[i]), method, **params),
                                  METHODS[method].default_sign) for i in keep[:4]]
        survival[method] = float(np.mean(values))
    assert survival["guided_backprop"] > survival["saliency"] + 0.05
    assert survival["guided_backprop"] > survival["integrated_gradients"] + 0.3
    assert survival["saliency"] < sanity.THRESHOLD and survival["integrated_gradients"] < sanity.THRESHOLD
    assert survival["guided_backprop"] >= sanity.THRESHOLD


def test_a_blank_grad_cam_says_why():
    assert "no feature-map channel gives positive evidence" in blank_note("grad_cam", np.zeros((4, 4)))
    assert blank_note("grad_cam", np.eye(4)) is None


def test_every_run_keeps_its_weights_from_before_training(tiny_split, trainlens_home):
    from engine.config import RunConfig
    from engine.train import MemorySink, train

    config = RunConfig(model="mlp", epochs=1, batch_size=32, hidden=8, depth=1).validate()
    sink = MemorySink()
    train(config, sink, split=tiny_split, run_id="fresh")
    assert initial_path("fresh").is_file()
    assert all(epoch >= 0 for epoch, _, _ in sink.checkpoints)  # not a checkpoint to resume from
    assert history_epochs("fresh") == [INITIAL_EPOCH, 0]
    initial, trained = load_checkpoint(resolve("fresh", INITIAL_EPOCH)), load_checkpoint(resolve("fresh", 0))
    assert initial.epoch == INITIAL_EPOCH and initial.step == 0
    assert not torch.equal(initial.model["net.1.weight"], trained.model["net.1.weight"])  # training moved them
