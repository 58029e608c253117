"""engine.explain.quality on a convnet trained here on `shapes`, with Captum's metrics called directly as reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.metrics import infidelity, sensitivity_max
from scipy.stats import spearmanr
from explain_helpers import trained_on

from engine.explain.methods import explain
from engine.explain.quality import (deletion_curve, infidelity_score, mask_score, quality, randomization_check,
                                    relative_infidelity, sensitivity_score)

N_IMAGES = 12  # validation images the statistical checks average over


@pytest.fixture(scope="module")
def trained():
    """A convnet trained for a few seconds on shapes (about 75% validation accuracy), with its val images."""
    model, split, val_x, correct = trained_on("shapes", steps=400, batch_size=48, n_val=200, at_least=0.6)
    keep = torch.where(correct)[0][:N_IMAGES]  # explain images the model gets right
    return model, val_x[keep], split.val_y[:200][keep], split.val_masks[:200][keep]


def test_saliency_finds_the_object_better_than_a_random_map(trained):
    model, x, y, masks = trained
    ours, random_maps, chance = [], [], []
    generator = torch.Generator().manual_seed(0)
    for i in range(N_IMAGES):
        attributions = explain(model, x[i:i + 1], int(y[i]), "saliency")
        score = mask_score(attributions, masks[i])
        ours.append(score.share)
        chance.append(score.chance)
        random_maps.append(mask_score(torch.rand(x[i:i + 1].shape, generator=generator), masks[i]).share)
    assert np.mean(ours) > np.mean(random_maps) + 0.1
    assert abs(np.mean(random_maps) - np.mean(chance)) < 0.08  # a random map scores about the object's area


def test_mask_score_counts_top_pixels_inside_the_mask():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:4, 2:6] = True  # 8 object pixels
    on_object = mask[None].float().expand(3, 8, 8)
    assert mask_score(on_object, mask).share == 1.0
    assert mask_score(-on_object * 5, mask).share == 1.0  # ranked by magnitude
    assert mask_score(1 - on_object, mask).share == 0.0
    assert mask_score(on_object, mask).chance == 8 / 64


def test_randomizing_the_layers_destroys_the_saliency_map(trained):
    # Adebayo et al. (2018): a map that explains the model must change when the model's weights are random
    model, x, y, _ = trained
    first, last = [], []
    for i in range(4):
        steps = randomization_check(model, x[i:i + 1], int(y[i]), "saliency")
        assert [s.layer for s in steps] == ["fc3", "fc2", "fc1", "conv2", "conv1"]  # from the top down
        first.append(steps[0].spearman)
        last.append(steps[-1].spearman)
    assert np.mean(last) < 0.8 and np.mean(last) < np.mean(first) - 0.15
    # the trained model itself is untouched (the check randomises a copy)
    torch.testing.assert_close(explain(model, x[:1], int(y[0]), "saliency"),
                               explain(model, x[:1], int(y[0]), "saliency"))


def test_randomization_correlation_is_spearmans_rho(trained):
    model, x, y, _ = trained
    torch.manual_seed(0)
    steps = randomization_check(model, x[:1], int(y[0]), "input_x_gradient", seed=3)
    # recompute the last step independently: every layer re-initialised with the same seed, in the same order
    import copy

    reference_model = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        for name in ["fc3", "fc2", "fc1", "conv2", "conv1"]:
            reference_model.get_submodule(name).reset_parameters()
    a = explain(model, x[:1], int(y[0]), "input_x_gradient").sum(1).flatten().numpy()
    b = explain(reference_model, x[:1], int(y[0]), "input_x_gradient").sum(1).flatten().numpy()
    assert steps[-1].spearman == pytest.approx(spearmanr(np.abs(a), np.abs(b)).statistic, abs=1e-6)
    assert steps[-1].spearman_signed == pytest.approx(spearmanr(a, b).statistic, abs=1e-6)


def test_infidelity_equals_captum_called_directly(trained):
    model, x, y, _ = trained
    xi, target = x[:1], int(y[0])
    attributions = explain(model, xi, target, "integrated_gradients")
    ours = infidelity_score(model, xi, attributions, target, multiplies_inputs=True, baseline=-1.0, seed=5)

    def remove_a_square(inputs):  # the same perturbation, written out: one square patch set to the baseline
        n, _, h, w = inputs.shape
        mask = torch.zeros(n, 1, h, w, dtype=torch.bool)
        for k in range(n):
            side = int(torch.randint(h // 8, h // 3 + 1, ()))
            top, left = int(torch.randint(0, h - side + 1, ())), int(torch.randint(0, w - side + 1, ()))
            mask[k, :, top:top + side, left:left + side] = True
        return mask.expand_as(inputs).float(), torch.where(mask, torch.full_like(inputs, -1.0), inputs)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        reference = infidelity(model, remove_a_square, xi, attributions, target=target, n_perturb_samples=32,
                               normalize=True)
    torch.testing.assert_close(ours, reference)


def test_relative_infidelity_prefers_real_maps_to_noise(trained):
    # the same removals for every map (same seed); a map of noise predicts their effect worse
    model, x, y, _ = trained
    scores: dict[str, list[float]] = {"occlusion": [], "deeplift": [], "noise": []}
    for i in range(8):
        xi, target = x[i:i + 1], int(y[i])
        for name in ("occlusion", "deeplift"):
            attributions = explain(model, xi, target, name)
            scores[name].append(float(relative_infidelity(model, xi, attributions, target, multiplies_inputs=True)))
        noise = torch.randn(xi.shape, generator=torch.Generator().manual_seed(i))
        scores["noise"].append(float(relative_infidelity(model, xi, noise, target, multiplies_inputs=True)))
    assert all(0 <= v <= 1 + 1e-6 for values in scores.values() for v in values)  # never worse than no map
    assert np.mean(scores["noise"]) > 0.85
    assert np.mean(scores["occlusion"]) < np.mean(scores["noise"]) - 0.15
    assert np.mean(scores["deeplift"]) < np.mean(scores["noise"]) - 0.1


def test_sensitivity_equals_captum_called_directly(trained):
    model, x, y, _ = trained
    xi, target = x[:1], int(y[0])
    ours = sensitivity_score(model, xi, target, "saliency", seed=2, samples=4)
    radius = 0.02 * float(xi.max() - xi.min())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        reference = sensitivity_max(lambda inputs, target: (explain(model, inputs[0], target, "saliency"),),
                                    (xi,), perturb_radius=radius, n_perturb_samples=4, target=target)
    torch.testing.assert_close(ours, reference)
    assert float(ours) > 0


def test_deletion_curve_falls_faster_for_integrated_gradients_than_for_random_order(trained):
    model, x, y, _ = trained
    areas, random_areas = [], []
    for i in range(N_IMAGES):
        target = int(y[i])
        curve = deletion_curve(model, x[i:i + 1], explain(model, x[i:i + 1], target, "integrated_gradients"), target)
        areas.append(curve.area)
        random_areas.append(curve.random_area)
        assert curve.fractions[0] == 0 and curve.fractions[-1] == 1 and len(curve.scores) == 21
        with torch.no_grad():
            start = torch.softmax(model(x[i:i + 1]), 1)[0, target]
        assert curve.scores[0] == pytest.approx(float(start), abs=1e-5)  # nothing removed yet
        assert curve.area == pytest.approx(np.trapezoid(curve.scores, curve.fractions))
    assert np.mean(areas) < np.mean(random_areas) - 0.1


def test_quality_gathers_every_score(trained):
    model, x, y, masks = trained
    target = int(y[0])
    attributions = explain(model, x[:1], target, "grad_cam")
    scores = quality(model, x[:1], target, "grad_cam", attributions, mask=masks[0]).as_dict()
    assert set(scores) >= {"infidelity", "infidelity_relative", "sensitivity_max", "deletion_auc",
                           "deletion_auc_random", "mask_share", "mask_chance"}
    assert all(np.isfinite(v) for v in scores.values())
    light = quality(model, x[:1], target, "grad_cam", attributions, sensitivity=False)
    assert light.sensitivity is None and light.mask is None


def test_grad_cam_finds_the_shapes_well_above_chance(trained):
    # Grad-CAM placed by receptive fields (engine.explain.geometry); on this briefly trained fixture about 31% against 16% chance
    model, x, y, masks = trained
    scores = [mask_score(explain(model, x[i:i + 1], int(y[i]), "grad_cam"), masks[i]) for i in range(N_IMAGES)]
    assert np.mean([s.share for s in scores]) > 1.6 * np.mean([s.chance for s in scores])
