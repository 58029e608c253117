"""engine.explain.methods: one table over the whole registry, plus reference checks against Captum called directly."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from captum.attr import (DeepLift, GuidedBackprop, IntegratedGradients, Occlusion,
                         Saliency)
from safetensors.torch import save_file

from engine.checkpoints import Checkpoint, epoch_path, save_checkpoint
from engine.config import RunConfig
from engine.explain.methods import METHODS, NotApplicable, copy_model, explain, predict, resolve_params, why_not
from engine.models import build_model

# tiny members of every model family, on inputs they accept
ZOO = {
    "convnet": (dict(channels=1, size=16), dict()),
    "resnet": (dict(channels=3, size=16), dict(width=4, depth=1)),
    "mlp": (dict(channels=1, size=12), dict(hidden=16, depth=1)),
    "gru": (dict(channels=1, size=12), dict(hidden=8, depth=1)),
}


def tiny(name: str, seed: int = 0):
    shape, extra = ZOO[name]
    torch.manual_seed(seed)
    model = build_model(name, num_classes=4, **shape, **extra).eval()
    x = torch.randn(2, shape["channels"], shape["size"], shape["size"], generator=torch.Generator().manual_seed(seed))
    return model, x


@pytest.mark.parametrize("model_name", list(ZOO))
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_on_every_model_family(method, model_name):
    model, x = tiny(model_name)
    reason = why_not(model, method)
    if reason is not None:
        assert METHODS[method].needs_layer or method == "deeplift"
        assert "does not apply" in reason
        with pytest.raises(NotApplicable, match="does not apply"):
            explain(model, x, 1, method)
        return
    keys_before = list(model.state_dict())
    a = explain(model, x, torch.tensor([1, 2]), method)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert a.abs().sum() > 0, "an all-zero map explains nothing"
    # deterministic: stochastic methods are reproducible through their seed
    assert torch.equal(a, explain(model, x, torch.tensor([1, 2]), method))
    if METHODS[method].stochastic:
        assert not torch.equal(a, explain(model, x, torch.tensor([1, 2]), method, seed=1))
    # the model is left as found: no hooks, no lost or duplicated modules, still in eval mode
    assert list(model.state_dict()) == keys_before
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())
    assert not model.training


def test_grad_cam_says_why_it_cannot_explain_an_mlp():
    model, _ = tiny("mlp")
    assert "convolutional feature map" in why_not(model, "grad_cam")
    assert why_not(tiny("convnet")[0], "grad_cam") is None


def test_saliency_equals_captum_called_directly():
    model, x = tiny("convnet")
    ours = explain(model, x, 3, "saliency")
    reference = Saliency(model).attribute(x.clone().requires_grad_(), target=3)  # Captum's default abs=True
    torch.testing.assert_close(ours, reference)
    signed = explain(model, x, 3, "saliency", abs=False)
    torch.testing.assert_close(signed.abs(), reference)


def test_integrated_gradients_equal_captum_and_are_complete():
    model, x = tiny("resnet")
    baseline = torch.full_like(x, -0.5)
    ours = explain(model, x, 2, "integrated_gradients", baseline=-0.5, n_steps=64)
    reference = IntegratedGradients(model).attribute(x.clone(), baselines=baseline, target=2, n_steps=64)
    torch.testing.assert_close(ours, reference)
    # completeness: the attributions sum to f(x) - f(baseline) for the target logit
    with torch.no_grad():
        gap = model(x)[:, 2] - model(baseline)[:, 2]
    many = explain(model, x, 2, "integrated_gradients", baseline=-0.5, n_steps=300, internal_batch_size=100)
    torch.testing.assert_close(many.sum(dim=(1, 2, 3)), gap, rtol=0.02, atol=2e-3)


def test_other_methods_equal_captum_called_directly():
    model, x = tiny("convnet")
    x = x.clone()
    torch.testing.assert_close(explain(model, x, 1, "deeplift", baseline=0.0),
                               DeepLift(model).attribute(x.clone(), baselines=torch.zeros_like(x), target=1))
    torch.testing.assert_close(explain(model, x, 1, "guided_backprop"),
                               GuidedBackprop(model).attribute(x.clone(), target=1))
    torch.testing.assert_close(explain(model, x, 1, "occlusion", window=4, stride=2),
                               Occlusion(model).attribute(x.clone(), sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2),
                                                          baselines=0.0, target=1))


def test_batch_equals_one_by_one_and_single_images_keep_their_shape():
    model, x = tiny("convnet")
    both = explain(model, x, [0, 3], "integrated_gradients", n_steps=16)
    torch.testing.assert_close(both[1], explain(model, x[1], 3, "integrated_gradients", n_steps=16))
    assert explain(model, x[0], 0, "saliency").shape == x[0].shape


def test_progress_is_reported_per_forward_pass():
    model, x = tiny("convnet")
    seen: list[float] = []
    explain(model, x[:1], 0, "occlusion", window=2, stride=1, per_eval=32, progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen) and len([f for f in seen if 0 < f < 1]) >= 5  # 225 windows / 32 per pass


def test_device_parameter_and_restored_training_mode():
    model, x = tiny("convnet")
    model.train()
    a = explain(model, x, 0, "saliency", device="cpu")
    assert model.training, "the caller's mode is restored"
    torch.testing.assert_close(a, explain(model.eval(), x, 0, "saliency"))  # computed in eval mode
    if torch.cuda.is_available():
        torch.testing.assert_close(explain(model, x, 0, "saliency", device="cuda"), a, rtol=1e-3, atol=1e-5)


def test_unknown_method_and_parameter_are_named():
    model, x = tiny("convnet")
    with pytest.raises(ValueError, match="known methods are saliency"):
        explain(model, x, 0, "lime")
    with pytest.raises(ValueError, match="n_step.*its parameters: baseline, n_steps"):
        resolve_params("integrated_gradients", {"n_step": 5})


def test_concurrent_explanations_of_one_model_do_not_see_each_others_hooks():
    # Guided Backprop hooks the model's ReLUs while it runs; a Saliency running at the same time must not
    # pick the hooks up (the per-model lock), and vice versa
    model, x = tiny("convnet")
    expected = {m: explain(model, x, 1, m) for m in ("saliency", "guided_backprop")}
    results: dict[str, list[torch.Tensor]] = {m: [] for m in expected}

    def work(name: str) -> None:
        for _ in range(15):
            results[name].append(explain(model, x, 1, name))

    threads = [threading.Thread(target=work, args=(m,)) for m in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, maps in results.items():
        assert all(torch.equal(m, expected[name]) for m in maps), name


def test_copies_taken_during_an_explanation_are_clean():
    # DeepLIFT hooks every ReLU and hides the `target_layer` alias while it runs; a copy taken meanwhile by
    # another thread (the page's background jobs copy the shared model) must have neither hooks nor gaps
    model, x = tiny("resnet")
    stop = threading.Event()

    def explain_repeatedly() -> None:
        while not stop.is_set():
            explain(model, x, 1, "deeplift")

    worker = threading.Thread(target=explain_repeatedly)
    worker.start()
    try:
        for _ in range(20):
            clone = copy_model(model)
            assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in clone.modules())
            assert clone.target_layer is clone.blocks[-1]
    finally:
        stop.set()
        worker.join()
    torch.testing.assert_close(explain(clone, x, 1, "deeplift"), explain(model, x, 1, "deeplift"))


def test_predict_gives_probabilities():
    model, x = tiny("resnet")
    probs = predict(model, x)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


# ---- pretrained ImageNet models ---------------------------------------------------------------------------------


def test_pretrained_resnet_from_a_local_file_matches_torchvision(tmp_path):
    import torchvision

    from engine.explain.pretrained import load_pretrained

    torch.manual_seed(0)
    original = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(path))
    loaded = load_pretrained("resnet18", weights_file=path)
    assert len(loaded.classes) == 1000 and loaded.classes[0] == "tench" and loaded.spec.size == 224
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), original(x))  # own ReLUs per use: same function
    # DeepLIFT needs one module per activation use: torchvision's shared in-place ReLU breaks it, ours works
    with pytest.raises(RuntimeError, match="used more than once"):
        DeepLift(original).attribute(x.clone(), target=0)
    a = explain(loaded.model, x, 0, "deeplift")
    torch.testing.assert_close(a.sum(), loaded.model(x)[0, 0] - loaded.model(torch.zeros_like(x))[0, 0],
                               rtol=1e-3, atol=1e-3)  # DeepLIFT's summation-to-delta
    assert explain(loaded.model, x, 0, "grad_cam").shape == x.shape


def test_pretrained_offline_says_which_file_to_put_where(tmp_path, monkeypatch):
    from engine.explain.pretrained import PretrainedUnavailable, load_pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(PretrainedUnavailable, match=r"resnet18-f37072fd\.pth into .*torch/hub/checkpoints"):
        load_pretrained("resnet18", download=False)
    (tmp_path / "bad.pth").write_bytes(b"not a state dict")
    with pytest.raises(PretrainedUnavailable, match="not a readable state dict"):
        load_pretrained("resnet18", weights_file=tmp_path / "bad.pth")


# ---- rendering ----------------------------------------------------------------------------------------------


def test_heatmaps_colour_by_sign_and_overlays_keep_the_image_where_the_map_is_zero():
    from engine.explain.render import heatmap, overlay, pixel_map, scale_map

    attributions = torch.zeros(3, 4, 4)
    attributions[:, 0, 0] = 1.0  # the channel total is the pixel's value
    attributions[0, 3, 3] = -2.0
    values = pixel_map(attributions)
    assert values[0, 0] == 3.0 and values[3, 3] == -2.0
    assert scale_map(values, "negative")[0, 0] == 0 and scale_map(values, "negative")[3, 3] == 1
    assert scale_map(values, "absolute").max() == 1 and scale_map(values, "all").min() < 0
    diverging = heatmap(values, "all").astype(int)
    assert diverging[0, 0, 0] > diverging[0, 0, 2] and diverging[3, 3, 2] > diverging[3, 3, 0]  # red for, blue against
    assert abs(diverging[1, 1, 0] - diverging[1, 1, 2]) < 10  # zero is neutral
    image = torch.full((1, 4, 4), 0.2)
    mixed = overlay(image, values, "positive")
    assert (mixed[1, 1] == mixed[2, 2]).all() and not (mixed[0, 0] == mixed[1, 1]).all()
    with pytest.raises(ValueError, match="sign='both'"):
        scale_map(values, "both")


# ---- the CLI: python -m engine explain -------------------------------------------------------------------------


def test_cli_explain_writes_a_png(trainlens_home, tmp_path, capsys):
    from PIL import Image

    from engine.cli import main
    from engine.runs.store import Store

    config = RunConfig(dataset="mnist5k", model="convnet")
    run_id = Store().create_run(config)
    torch.manual_seed(0)
    model = build_model("convnet", channels=1, size=28, num_classes=10)
    save_checkpoint(epoch_path(run_id, 0), Checkpoint(config=config, epoch=0, step=1, model=model.state_dict(),
                                                      extra={"mean": [0.13], "std": [0.31]}))
    image = tmp_path / "digit.png"
    canvas = Image.new("L", (90, 90), 255)
    canvas.paste(0, (40, 15, 52, 75))  # a dark "1" on light paper
    canvas.save(image)
    out = tmp_path / "out" / "map.png"
    assert main(["explain", run_id[:6], str(image), "--method", "integrated_gradients", "--target", "1",
                 "--checkpoint", "last", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["target"] == 1 and result["inverted"] is True and result["epoch"] == 1
    assert result["epoch_label"] == "after epoch 1" and isinstance(result["unfamiliar"], bool)
    # a photo given to the digit model: the same warning as on the page
    from sklearn.datasets import load_sample_image

    photo = tmp_path / "photo.png"
    Image.fromarray(load_sample_image("china.jpg")).save(photo)
    assert main(["explain", run_id, str(photo), "--method", "grad_cam", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["unfamiliar"] is True and "unlike anything the model was trained on" in result["warning"]
    assert Image.open(out).size[0] > 3 * 224  # input, heatmap and overlay side by side
    assert main(["explain", run_id, str(image), "--method", "grad_cam", "--target", "12", "--out", str(out)]) == 2
    assert "--target 12: classes are 0..9" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["explain", run_id, str(tmp_path / "notes.txt"), "--out", str(out)]) == 2
    assert "not an image" in capsys.readouterr().err


def test_explain_counts_checkpoints_as_the_explain_page_does(tmp_path, capsys):
    """`--checkpoint N` is "after epoch N" and 0 "before training", as on the Explain page; -1 was accepted silently
    (the engine's own index of "before training") and is now refused with what to type."""
    from PIL import Image
    from test_explain_page import make_run

    from engine.cli import main

    run_id = make_run("mlp", epochs=2)  # with its weights before training
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(image)
    out = tmp_path / "map.png"
    for given, label in (("0", "before training"), ("1", "after epoch 1"), ("2", "after epoch 2")):
        assert main(["explain", run_id, str(image), "--checkpoint", given, "--out", str(out)]) == 0
        result = json.loads(capsys.readouterr().out)
        assert (result["epoch_label"], result["epoch"]) == (label, int(given))
    assert main(["explain", run_id, str(image), "--checkpoint", "-1", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == ("error: --checkpoint '-1': expected an epoch number (1 = after the "
                                               "first epoch, 0 = before training), 'best' or 'last'")
    assert main(["explain", run_id, str(image), "--checkpoint", "3", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("has no checkpoint after epoch 3; after epochs: 1, 2 (0: before "
                                                    "training)")
