"""The model zoo: mlp, convnet, resnet and rnn/gru/lstm, built by name for any input size.

Every model takes images [B, C, H, W] and returns logits [B, classes], so datasets, the training loop
and the explainers never special-case a model. Activations are separate nn.ReLU/nn.Tanh modules, never
functional calls or reused instances: Captum's DeepLift and GuidedBackprop hook each activation module.
`model.target_layer` (a property, so the layer is not registered twice) names the layer Grad-CAM should
look at (None where no spatial layer exists). Every model names its head, `head_name` (the last classifier layer,
whose input is the penultimate features), and its `backbone` (the feature layers, `backbone_names`): the rule of
`freeze=backbone|all_but_head`, of a new head when a run starts from one with other classes (engine.transfer), and of
the features the Run report lays out (engine.diagnostics.features).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.config import RunConfig


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}[name]()


class MLP(nn.Module):
    """Flatten, `depth` hidden layers of `hidden` units, then the classifier."""

    def __init__(self, channels: int, size: int, num_classes: int, hidden: int = 128, depth: int = 2,
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = channels * size * size
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), _activation(activation)]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        self.net = nn.Sequential(*layers)
        self.head_name = f"net.{len(layers) - 1}"
        # no feature extractor apart from the classifier: every hidden layer is the backbone
        self.backbone_names = tuple(f"net.{i}" for i, layer in enumerate(layers[:-1]) if isinstance(layer, nn.Linear))

    @property
    def target_layer(self) -> nn.Module | None:
        return None  # no spatial feature map: Grad-CAM does not apply

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    """The classic two-conv net of the PyTorch CIFAR-10 tutorial (LeNet-5 shaped).

    The flatten size follows the input: 16 x 5 x 5 at 32x32, 16 x 4 x 4 at 28x28.
    """

    head_name = "fc3"
    backbone_names = ("conv1", "conv2")  # the convolutional feature extractor; fc1 and fc2 classify its features

    def __init__(self, channels: int, size: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        side = ((size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"convnet needs images of at least 16x16 pixels, got {size}x{size}")
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc3 = nn.Linear(84, num_classes)

    @property
    def target_layer(self) -> nn.Module:
        # a property, not an attribute: assigning a module would register it twice (duplicate checkpoint
        # keys, and Captum hooking the layer twice)
        return self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        x = self.relu4(self.fc2(x))
        return self.fc3(self.dropout(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs; with `skip` the input is added back (projected when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int, skip: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.skip = skip
        self.shortcut: nn.Module = nn.Identity()
        if skip and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.skip:
            out = out + self.shortcut(x)
        return self.relu2(out)


class ResNet(nn.Module):
    """A small ResNet: a 3x3 stem, three stages of `depth` blocks (width, 2x, 4x channels), global pooling."""

    head_name = "fc"
    backbone_names = ("stem", "blocks")

    def __init__(self, channels: int, size: int, num_classes: int, width: int = 16, depth: int = 2,
                 skip: bool = True, dropout: float = 0.0):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks: list[nn.Module] = []
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(depth):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, stride, skip))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)

    @property
    def target_layer(self) -> nn.Module:
        return self.blocks[-1]  # last block's output: the finest map that still sees the whole object

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(self.dropout(self.flatten(self.pool(x))))


class RowRNN(nn.Module):
    """Reads an image row by row (H steps of C*W features) with an RNN/GRU/LSTM; classifies the last state."""

    head_name = "fc"
    backbone_names = ("rnn",)

    def __init__(self, kind: str, channels: int, size: int, num_classes: int, hidden: int = 128,
                 depth: int = 1, dropout: float = 0.0):
        super().__init__()
        cell = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind]
        self.rnn = cell(channels * size, hidden, num_layers=depth, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    @property
    def target_layer(self) -> nn.Module | None:
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # sequence of rows, each row = all channels
        out, _ = self.rnn(rows)
        return self.fc(self.dropout(out[:, -1]))


def build_model(name: str, *, channels: int, size: int, num_classes: int, hidden: int = 128, depth: int = 2,
                width: int = 16, skip: bool = True, activation: str = "relu", dropout: float = 0.0) -> nn.Module:
    """Build a zoo model by name for [B, channels, size, size] inputs."""
    if name == "mlp":
        return MLP(channels, size, num_classes, hidden, depth, activation, dropout)
    if name == "convnet":
        return ConvNet(channels, size, num_classes, dropout)
    if name == "resnet":
        return ResNet(channels, size, num_classes, width, depth, skip, dropout)
    if name in ("rnn", "gru", "lstm"):
        return RowRNN(name, channels, size, num_classes, hidden, depth, dropout)
    raise ValueError(f"model={name!r}: allowed values are mlp, convnet, resnet, rnn, gru, lstm")


def model_from_config(config: RunConfig, channels: int, size: int, num_classes: int) -> nn.Module:
    """The run's model. For a text or character dataset (channels 0) `size` is the vocabulary size (see
    DatasetInfo.kind); a character dataset's models predict the next character (engine.chars.models)."""
    from engine.datasets import DATASETS

    if channels == 0 and DATASETS[config.dataset].kind == "chars":
        from engine.chars.models import build_char_model

        return build_char_model(config.model, vocab_size=size, embed_dim=config.embed_dim, hidden=config.hidden,
                                depth=config.depth, context=config.context, block_size=config.block_size,
                                heads=config.heads, activation=config.activation, dropout=config.dropout)
    if channels == 0:
        from engine.text.models import build_text_model

        return build_text_model(config.model, vocab_size=size, num_classes=num_classes, embed_dim=config.embed_dim,
                                hidden=config.hidden, depth=config.depth, bidirectional=config.bidirectional,
                                dropout=config.dropout)
    return build_model(config.model, channels=channels, size=size, num_classes=num_classes, hidden=config.hidden,
                       depth=config.depth, width=config.width, skip=config.skip, activation=config.activation,
                       dropout=config.dropout)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_count(config: RunConfig, channels: int, size: int, num_classes: int) -> int:
    """The parameters of the run's model (see model_from_config for the arguments), counted on torch's meta device:
    nothing is allocated and nothing initialised, so a page previewing `hidden=8192, depth=64` (4.2 billion
    parameters, 17 GB of weights) or a class limit refusing it costs milliseconds, not the server's memory. The base
    model's: engine.transfer.estimate_summary adds a run's adapters and says what is frozen."""
    with torch.device("meta"):
        return count_parameters(model_from_config(config, channels, size, num_classes))


def estimate_parameters(config: RunConfig) -> int:
    """The parameters a run of `config` will train, from the config and the dataset registry alone (no data is read):
    a text model's vocabulary is counted at its cap (`vocab_size`, an upper bound: the real one is the training
    split's distinct tokens), a character model's at its corpus's bound (engine.chars.corpus.vocabulary_bound), and a
    dataset whose classes are known only once read (`text_csv`) at 2 classes."""
    return parameter_count(*estimate_arguments(config))


def estimate_arguments(config: RunConfig) -> tuple[RunConfig, int, int, int]:
    """(config, channels, size, classes) as `estimate_parameters` counts them (the classes a run chooses): see there."""
    from engine.datasets import DATASETS
    from engine.transfer_spec import class_names

    info = DATASETS[config.dataset]
    if info.kind == "chars":  # its vocabulary at its bound (engine.chars.corpus), the next character its class
        from engine.chars.corpus import vocabulary_bound

        return config, 0, vocabulary_bound(config), vocabulary_bound(config)
    classes = max(2, len(class_names(config) or ()))
    if info.kind == "text":
        return config, 0, config.vocab_size, classes
    return config, info.channels, info.size, classes
