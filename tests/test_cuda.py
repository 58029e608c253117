"""CUDA checks: what must hold when the engine runs on a GPU. Every test skips on a CPU-only machine.

Run them on a GPU machine with `bash benchmarks/gpu_check.sh` (these tests plus benchmarks/gpu_throughput.py,
under 10 minutes), or alone with `python -m pytest -m cuda -q tests/test_cuda.py`. They cover:
- device placement: a run trained with device='cuda' holds its model on the GPU and logs finite losses, and
  device='auto' resolves to CUDA;
- augmentation of GPU tensors: same result as on the CPU for the same generator seed (the engine draws the
  random parameters from a CPU generator whatever the device), and the whole batch path likewise;
- explanations of recurrent models: cuDNN refuses RNN backward in eval mode, so `explain` must work around it;
- checkpoints: a file written by a CUDA run loads on the CPU and predicts what it predicts on the GPU, and a
  CUDA run resumes from its epoch checkpoint.
Mixed precision is not tested: RunConfig offers no AMP/precision setting (benchmarks/gpu_throughput.py
measures what bf16 autocast would buy in a bare loop).
"""

from __future__ import annotations

import math

import pytest
import torch

import engine.train as train_module
from engine.checkpoints import epoch_path, load_checkpoint, load_run_model, resolve
from engine.config import RunConfig
from engine.data.augment import AugmentSpec, augment_batch
from engine.data.loading import iterate_batches, load_dataset, normalize
from engine.explain.methods import explain
from engine.models import build_model
from engine.train import MemorySink, pick_device, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA device (run benchmarks/gpu_check.sh on a GPU machine)"),
]

# a run small enough for a few seconds: 256 training digits, 8 steps of 32
TINY = {"dataset": "mnist5k", "train_limit": 256, "epochs": 1, "batch_size": 32, "layer_stats_every": 4}


def _train_capturing_model(config: RunConfig, monkeypatch, **kwargs):
    """train(), also returning the model it built (the loop does not hand it back)."""
    built = []
    real = train_module.model_from_config

    def spy(*args, **kw):
        built.append(real(*args, **kw))
        return built[-1]

    monkeypatch.setattr(train_module, "model_from_config", spy)
    sink = MemorySink()
    result = train(config, sink, **kwargs)
    assert len(built) == 1
    return result, sink, built[0]


def test_a_cuda_run_trains_on_the_gpu_and_logs_finite_losses(monkeypatch):
    config = RunConfig(**TINY, device="cuda")
    result, sink, model = _train_capturing_model(config, monkeypatch, device=pick_device(config.device))

    assert result.status == "completed" and result.step == 8
    assert all(p.is_cuda for p in model.parameters())
    assert all(b.is_cuda for b in model.buffers())
    losses = sink.series("loss")
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    for key in ("train_loss", "val_loss", "val_acc", "grad_norm", "examples_per_s"):
        assert sink.series(key) and all(math.isfinite(v) for v in sink.series(key)), key
    logged = {k for _, _, k, _ in sink.rows}
    for prefix in ("act_mean/", "grad_std/", "update_ratio/"):  # layer statistics computed on GPU tensors
        assert any(k.startswith(prefix) for k in logged), prefix
    assert "report/last" in sink.artifacts  # the final reports ran against GPU tensors
    assert "recipe_checks" in sink.artifacts


def test_auto_device_picks_cuda():
    assert pick_device("auto") == "cuda"
    assert pick_device("cuda") == "cuda"
    assert pick_device("cpu") == "cpu"
    assert pick_device(RunConfig(device="auto").validate().device) == "cuda"


@pytest.mark.parametrize("spec", [
    AugmentSpec(rotate=20.0, scale=0.15, translate=0.1, flip=True),  # the bilinear warp
    AugmentSpec(flip=True),  # flips only: the exact torch.where path
], ids=["affine", "flip_only"])
def test_augmenting_gpu_tensors_matches_the_cpu(spec):
    x = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    on_cpu = augment_batch(x, spec, torch.Generator().manual_seed(7))
    on_gpu = augment_batch(x.cuda(), spec, torch.Generator().manual_seed(7))

    assert on_gpu.is_cuda and on_gpu.shape == x.shape and on_gpu.dtype == x.dtype
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=1e-3)


def test_augmenting_uint8_gpu_tensors_matches_the_cpu_within_rounding():
    x = (torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    spec = AugmentSpec(rotate=30.0, translate=0.1)
    on_cpu = augment_batch(x, spec, torch.Generator().manual_seed(3))
    on_gpu = augment_batch(x.cuda(), spec, torch.Generator().manual_seed(3))

    assert on_gpu.is_cuda and on_gpu.dtype == torch.uint8
    assert (on_gpu.cpu().int() - on_cpu.int()).abs().max() <= 1  # a value at .5 may round either way


def test_the_batch_path_on_gpu_tensors_gives_the_cpu_batches():
    split = load_dataset("mnist5k", limit=200)
    spec = AugmentSpec(rotate=15.0, scale=0.1, translate=0.1)
    kwargs = {"seed": 3, "epoch": 1, "augment": spec, "mean": split.mean, "std": split.std}
    cpu_batches = list(iterate_batches(split.train_x, split.train_y, 64, **kwargs))
    gpu_batches = list(iterate_batches(split.train_x.cuda(), split.train_y.cuda(), 64, **kwargs))

    assert len(gpu_batches) == len(cpu_batches) == 4
    for (xc, yc), (xg, yg) in zip(cpu_batches, gpu_batches):
        assert xg.is_cuda and yg.is_cuda
        assert torch.equal(yg.cpu(), yc)  # same order: the permutation comes from the CPU generator
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-3)


@pytest.mark.parametrize("method,params", [("saliency", {}), ("integrated_gradients", {"n_steps": 16})],
                         ids=["saliency", "integrated_gradients"])
@pytest.mark.parametrize("kind", ["gru", "lstm", "rnn"])
def test_explaining_a_recurrent_model_on_the_gpu(kind, method, params):
    # cuDNN's RNN backward raises in eval mode, and explanations run in eval mode: explain() must cope
    torch.manual_seed(0)
    model = build_model(kind, channels=1, size=28, num_classes=10, hidden=32, depth=2).cuda()
    model.train()  # as a model is right after training; explain() switches to eval and back
    inputs = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(4)).cuda()
    target = torch.tensor([0, 3, 5, 9], device="cuda")

    attributions = explain(model, inputs, target, method, **params)

    assert attributions.is_cuda and attributions.shape == inputs.shape and attributions.dtype == torch.float32
    assert torch.isfinite(attributions).all() and attributions.abs().sum() > 0
    assert model.training and model.rnn.training  # the caller's mode is restored
    on_cpu = explain(model, inputs.cpu(), target.cpu(), method, device="cpu", **params)
    scale = on_cpu.abs().max()
    assert (attributions.cpu() - on_cpu).abs().max() <= 1e-2 * scale  # the same map as on the CPU


def test_a_checkpoint_written_by_a_cuda_run_loads_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLENS_HOME", str(tmp_path / "home"))
    config = RunConfig(**TINY, device="cuda")
    result = train(config, MemorySink(), run_id="cudarun", device="cuda")
    assert result.status == "completed"

    path = resolve("cudarun", "last")
    on_cpu = load_checkpoint(path, device="cpu")
    on_gpu = load_checkpoint(path, device="cuda")
    assert on_cpu.config.device == "cuda"  # the config travels with the file and still validates on a CPU box
    assert all(t.device.type == "cpu" for t in on_cpu.model.values())
    assert all(t.device.type == "cpu" for state in on_cpu.optimizer["state"].values()
               for t in state.values() if torch.is_tensor(t))
    assert on_cpu.rng is not None and on_cpu.rng.device.type == "cpu"
    for name, tensor in on_cpu.model.items():
        assert on_gpu.model[name].is_cuda and torch.equal(on_gpu.model[name].cpu(), tensor), name

    cpu_model, _, _, _ = load_run_model("cudarun", "last", device="cpu")
    gpu_model, _, _, _ = load_run_model("cudarun", "last", device="cuda")
    assert all(p.device.type == "cpu" for p in cpu_model.parameters())
    assert all(p.is_cuda for p in gpu_model.parameters())
    split = load_dataset(config.dataset, val_fraction=config.val_fraction)
    x = normalize(split.val_x[:256], on_cpu.extra["mean"], on_cpu.extra["std"])
    with torch.no_grad():
        logits_cpu = cpu_model(x)
        logits_gpu = gpu_model(x.cuda()).cpu()
    # cuDNN may use TF32 for convolutions: close, not bitwise equal
    torch.testing.assert_close(logits_gpu, logits_cpu, rtol=2e-2, atol=2e-2)
    agreement = (logits_gpu.argmax(1) == logits_cpu.argmax(1)).float().mean().item()
    assert agreement >= 0.99


def test_a_cuda_run_resumes_from_its_epoch_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLENS_HOME", str(tmp_path / "home"))
    first = RunConfig(**TINY, device="cuda")
    assert train(first, MemorySink(), run_id="resume", device="cuda").status == "completed"

    longer = first.with_updates(epochs=2)
    result, sink, model = _train_capturing_model(longer, monkeypatch, run_id="resume", device="cuda",
                                                 resume_from=str(epoch_path("resume", 0)))

    assert result.status == "completed" and result.epoch == 1 and result.step == 16
    assert all(p.is_cuda for p in model.parameters())
    losses = sink.series("loss")
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
