"""The model zoo: every model on grey 28x28 and colour 32x32 input, gradients, skips, flatten sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.config import MODELS, RunConfig
from engine.models import BasicBlock, ConvNet, ResNet, build_model, count_parameters, model_from_config

SHAPES = [(1, 28), (3, 32)]  # (channels, side): MNIST-like and CIFAR/shapes-like
SMALL = dict(hidden=16, depth=2, width=4)


@pytest.mark.parametrize("channels, size", SHAPES, ids=["1x28", "3x32"])
@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_gradients_reach_every_parameter(name, channels, size):
    torch.manual_seed(0)
    model = build_model(name, channels=channels, size=size, num_classes=7, **SMALL)
    x = torch.randn(3, channels, size, size, requires_grad=True)
    logits = model(x)
    assert logits.shape == (3, 7)
    logits.square().sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {param_name}"
        assert torch.isfinite(param.grad).all()
    # the input gradient is what the explainers use: it must reach the pixels, all of them for these models
    assert x.grad is not None and x.grad.abs().sum() > 0
    first = next(p for p in model.parameters() if p.dim() > 1)
    assert first.grad.abs().sum() > 0, f"{name}: the first layer learns nothing"


@pytest.mark.parametrize("size, side", [(28, 4), (32, 5), (40, 7)])
def test_convnet_flatten_follows_input_size(size, side):
    model = ConvNet(3, size, 10)
    assert model.fc1.in_features == 16 * side * side
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 10)
    assert model.target_layer is model.conv2


def test_convnet_smallest_input_and_the_message_below_it():
    assert ConvNet(1, 16, 10)(torch.zeros(1, 1, 16, 16)).shape == (1, 10)  # 16 -> 12 -> 6 -> 2 -> 1
    for size in (8, 12, 15):
        with pytest.raises(ValueError, match=f"at least 16x16 pixels, got {size}x{size}"):
            ConvNet(1, size, 10)


def _zero_residual(block: BasicBlock) -> None:
    """Make the residual branch output zero, so the block outputs relu(shortcut(x)) or relu(0)."""
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()


def test_basic_block_adds_its_input_only_with_skip():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    with_skip, without = BasicBlock(4, 4, 1, skip=True).eval(), BasicBlock(4, 4, 1, skip=False).eval()
    _zero_residual(with_skip)
    _zero_residual(without)
    assert torch.allclose(with_skip(x), torch.relu(x))  # identity shortcut
    assert torch.equal(without(x), torch.zeros_like(x))


def test_resnet_skip_switch():
    torch.manual_seed(0)
    on = ResNet(3, 32, 10, width=4, depth=2, skip=True)
    off = ResNet(3, 32, 10, width=4, depth=2, skip=False)
    # with skips, the two stages that change shape get a 1x1 projection (conv + BN); without, none at all
    projections = [b.shortcut for b in on.blocks if not isinstance(b.shortcut, nn.Identity)]
    assert len(projections) == 2
    assert all(isinstance(b.shortcut, nn.Identity) and not b.skip for b in off.blocks)
    assert count_parameters(on) > count_parameters(off)
    # same weights, skips on vs off: different outputs (the switch is used in forward)
    off.load_state_dict(on.state_dict(), strict=False)
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(on.eval()(x), off.eval()(x))


@pytest.mark.parametrize("depth", [1, 3])
def test_resnet_depth_is_blocks_per_stage(depth):
    model = ResNet(1, 28, 10, width=4, depth=depth)
    assert len(model.blocks) == 3 * depth
    assert model.target_layer is model.blocks[-1]
    assert model.fc.in_features == 16  # 4 * width after three stages


def test_mlp_parameter_count_by_hand():
    model = build_model("mlp", channels=1, size=28, num_classes=10, hidden=32, depth=2)
    expected = (784 * 32 + 32) + (32 * 32 + 32) + (32 * 10 + 10)
    assert count_parameters(model) == expected
    assert model.target_layer is None


@pytest.mark.parametrize("activation, module", [("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid),
                                                ("gelu", nn.GELU)])
def test_mlp_activation_modules_are_separate_instances(activation, module):
    model = build_model("mlp", channels=1, size=8, num_classes=3, hidden=8, depth=3, activation=activation)
    found = [m for m in model.modules() if isinstance(m, module)]
    assert len(found) == 3 and len({id(m) for m in found}) == 3  # Captum hooks each activation module


@pytest.mark.parametrize("kind, cell", [("rnn", nn.RNN), ("gru", nn.GRU), ("lstm", nn.LSTM)])
def test_rnn_reads_rows_of_all_channels(kind, cell):
    model = build_model(kind, channels=3, size=32, num_classes=10, hidden=8, depth=2)
    assert isinstance(model.rnn, cell)
    assert (model.rnn.input_size, model.rnn.hidden_size, model.rnn.num_layers) == (3 * 32, 8, 2)
    # the class depends on the last rows too: change only the last row and the logits change
    x = torch.randn(1, 3, 32, 32)
    y = x.clone()
    y[:, :, -1] += 1.0
    assert not torch.allclose(model(x), model(y))


def test_model_from_config_passes_the_fields():
    config = RunConfig(model="resnet", width=6, depth=1, skip=False, dropout=0.3)
    model = model_from_config(config, channels=3, size=32, num_classes=5)
    assert isinstance(model, ResNet)
    assert model.stem[0].out_channels == 6 and len(model.blocks) == 3
    assert not any(b.skip for b in model.blocks)
    assert model.dropout.p == 0.3 and model.fc.out_features == 5


def test_unknown_model_name():
    with pytest.raises(ValueError, match="vgg"):
        build_model("vgg", channels=1, size=28, num_classes=10)
