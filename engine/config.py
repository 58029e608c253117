"""RunConfig: the one typed description of a training run.

Every field has a default and a comment (units, range). `validate()` raises ValueError naming the
field, the bad value and what is allowed. A config round-trips exactly through dict, JSON and TOML,
and is stored with every run and every checkpoint, so a run can always be reproduced from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, fields
from typing import Any

import tomli_w

from engine.datasets import DATASETS
from engine.records import check_name
from engine.transfer_spec import ADAPTERS
from engine.transfer_spec import check_config as check_transfer

MAX_TOML_CHARS = 100_000  # a run's config is a few hundred bytes; a bigger file is a mistake (or an attack)

MODELS = ("mlp", "convnet", "resnet", "rnn", "gru", "lstm")  # the models of image datasets
TEXT_MODELS = ("bow", "textcnn", "rnn", "gru", "lstm")  # the models of text datasets (rnn/gru/lstm read both)
TEXT_ONLY_MODELS = ("bow", "textcnn")
IMAGE_ONLY_MODELS = ("mlp", "convnet", "resnet")
CHAR_MODELS = ("bigram", "mlp", "rnn", "gru", "lstm", "transformer")  # the models of character datasets (kind chars)
CHAR_ONLY_MODELS = ("bigram", "transformer")
NAMES_LISTS = ("first", "last", "both")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "inverse_time", "warmup", "onecycle")
CLIPS = ("none", "norm", "value")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
STOP_METRICS = ("val_loss", "val_acc")
TEXT_LEVELS = ("word", "char")  # engine.text.vocab.LEVELS
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RunConfig:
    # --- data ---
    dataset: str = "mnist5k"  # a name of engine.datasets.DATASETS; mnist5k and shapes work offline
    data_dir: str = ""  # folder holding torchvision dataset files; "" = TRAINLENS_HOME/data
    val_fraction: float = 0.2  # share of the data held out for validation (embedded datasets), in (0, 0.9]
    train_limit: int = 0  # cap on training examples for quick demos; 0 = use all
    batch_size: int = 32  # examples per optimizer step, 1..8192
    augment_rotate: float = 0.0  # max random rotation in degrees, 0..180
    augment_scale: float = 0.0  # max random zoom: factor in [1-s, 1+s], 0..0.9
    augment_translate: float = 0.0  # max random shift as a fraction of the image side, 0..0.5
    augment_flip: bool = False  # random horizontal flips (off for digits: a flipped 2 is not a 2)
    text_negation: float = 0.35  # sentiment: share of clauses with a negator (not, never, hardly), 0..1
    text_contrast: float = 0.3  # sentiment: share of reviews of two clauses joined by 'but', 0..1
    text_filler: int = 3  # sentiment: most filler phrases around the clauses (sets sentence length), 0..10
    vocab_size: int = 20000  # text: most tokens in the vocabulary (from the training split), 2..1000000
    vocab_min_count: int = 1  # text: a token enters the vocabulary when seen this many times in training, >= 1
    text_level: str = "word"  # text: tokens are words (and punctuation) or single characters, word | char
    text_column: str = ""  # text_csv: name of the text column; "" = detected (the longest values)
    label_column: str = ""  # text_csv: name of the label column; "" = detected (label, sentiment, class...)
    classes: str = ""  # train and validate on these classes only: "5-9", "0,2,4" (indices) or class names; "" = all
    train_per_class: int = 0  # K training examples per class, drawn by the data seed (the same for every run); 0 = all
    names_list: str = "first"  # names: first names (5,163), last = surnames (88,799) or both, one of NAMES_LISTS
    block_size: int = 32  # characters: the transformer's longest context (its learned positions) and the length of
    #                       each training chunk of long text (reviews, text_file), 8..1024
    # --- model ---
    model: str = "convnet"  # one of MODELS (images), TEXT_MODELS (text) or CHAR_MODELS (characters)
    hidden: int = 128  # MLP width / RNN hidden size, 1..8192
    depth: int = 2  # MLP hidden layers / RNN layers / ResNet blocks per stage, 1..64
    width: int = 16  # ResNet channels in the first stage (doubled per stage), 1..512
    skip: bool = True  # ResNet skip connections; off shows why deep plain nets train badly
    activation: str = "relu"  # MLP activation, one of ACTIVATIONS
    dropout: float = 0.0  # dropout probability before the classifier, 0..0.9
    embed_dim: int = 64  # text models: embedding size per token, 1..1024
    bidirectional: bool = False  # text rnn/gru/lstm: also read each sentence right to left
    # --- starting from another run (transfer) ---
    init_from: str = ""  # start from a run's weights: RUN_ID (its best), RUN_ID:last or RUN_ID:epochN; "" = random
    freeze: str = "none"  # weights kept fixed: none | backbone (feature layers) | all_but_head | name globs (fc1.*)
    adapter: str = "none"  # none | lora: low-rank adapters on linear and conv layers; base frozen, head trained
    lora_rank: int = 4  # rank r of each adapter (A is r x inputs, B outputs x r), 1..256
    lora_alpha: float = 8.0  # adapter scale: a layer adds alpha / rank * B A to its weights, > 0 and <= 1024
    context: int = 3  # characters: how many earlier characters the mlp reads to predict the next one, 1..64
    heads: int = 4  # transformer: attention heads per block (embed_dim must be a multiple), 1..64
    sample_temperature: float = 1.0  # characters: temperature of the 20 samples recorded at every evaluation
    #                                  (below 1 sharper, above 1 wilder; it never changes training), (0, 10]
    # --- optimizer ---
    optimizer: str = "adam"  # one of OPTIMIZERS; momentum = SGD with momentum, nesterov = SGD with Nesterov momentum
    lr: float = 2e-3  # peak learning rate, > 0 and <= 10
    momentum: float = 0.9  # momentum coefficient for 'momentum' and 'nesterov' SGD, 0..<1
    beta1: float = 0.9  # Adam/AdamW first-moment decay, 0..<1
    beta2: float = 0.999  # Adam/AdamW second-moment decay, 0..<1
    weight_decay: float = 0.0  # L2 penalty (decoupled for AdamW), 0..1
    # --- learning-rate schedule ---
    schedule: str = "constant"  # one of SCHEDULES
    warmup_steps: int = 0  # linear warmup steps from 0 to lr, prepended to any schedule but onecycle (which warms up itself), >= 0
    step_every: int = 200  # 'step' schedule: multiply lr by gamma every this many steps, >= 1
    gamma: float = 0.5  # 'step' schedule: decay factor, 0 < gamma <= 1
    decay_steps: int = 100  # 'inverse_time': lr_t = lr / (1 + t / decay_steps), >= 1
    min_lr_ratio: float = 0.0  # 'cosine': floor as a fraction of lr, 0..1
    # --- regularisation: gradient clipping ---
    clip: str = "none"  # none | norm (rescale total norm) | value (clamp each element)
    clip_value: float = 1.0  # max total grad norm ('norm') or max |element| ('value'), > 0
    # --- training length, stopping and averaging ---
    epochs: int = 3  # passes over the training set, 1..1000
    seed: int = 0  # seeds init, data order and augmentation; same seed + config = same curve on CPU
    early_stop: bool = False  # stop when the monitored metric stops improving
    early_stop_metric: str = "val_loss"  # metric watched by early stopping, one of STOP_METRICS
    patience: int = 3  # epochs without improvement before stopping, >= 1
    min_delta: float = 0.0  # smallest change that counts as an improvement, >= 0
    restore_best: bool = True  # after early stopping, restore the best epoch's weights
    ema: bool = False  # keep an exponential moving average of the weights and validate it too
    ema_decay: float = 0.99  # EMA decay per step, 0..<1
    swa: bool = False  # stochastic weight averaging: average weights at the end of each epoch from swa_start
    swa_start: int = 1  # first epoch (0-based) averaged by SWA, >= 0
    # --- diagnostics and execution ---
    layer_stats_every: int = 50  # log per-layer activation/gradient statistics every K steps; 0 = off (~2% cost at 50)
    device: str = "auto"  # auto (CUDA when the worker has it, else CPU) | cpu | cuda
    num_cpus: float = 1.0  # CPU cores the run reserves on a Ray cluster (also its torch threads, at least 1), (0, 1024]
    num_gpus: float = 0.0  # GPUs the run reserves on a Ray cluster; fractions share one GPU (0.25 = 4 runs per GPU), 0..64
    name: str = ""  # display name of the run; "" = generated from the config
    group: str = ""  # group (race) the run belongs to; "" = none

    # ---- validation ----
    def validate(self) -> "RunConfig":
        """Raise ValueError on the first bad field; returns self so calls can chain."""
        for f in fields(self):
            value = getattr(self, f.name)
            expected = _TYPES[f.name]
            # bools are ints in Python, and ints are acceptable floats: check precisely
            ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise ValueError(f"{f.name}={_shown(value)}: expected {expected.__name__}")
            if expected is float and not math.isfinite(value):
                raise ValueError(f"{f.name}={_shown(value)}: must be a finite number")
        check_name("name", self.name)
        check_name("group", self.group)
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={_shown(getattr(self, name))}: allowed values are {', '.join(allowed)}")
        for name, (low, high, low_open, high_open) in _RANGES.items():
            value = getattr(self, name)
            if (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
                lo = "(" if low_open else "["
                hi = ")" if high_open else "]"
                raise ValueError(f"{name}={_shown(value)}: must be in {lo}{low}, {high}{hi}")
        check_transfer(self)  # init_from, freeze, adapter, classes: their syntax (engine.transfer_spec)
        kind = DATASETS[self.dataset].kind
        text = kind == "text"
        if kind == "chars":
            if self.model not in CHAR_MODELS:
                raise ValueError(f"model={self.model}: {self.dataset} is a character dataset; its models are "
                                 f"{', '.join(CHAR_MODELS)}")
            if self.model == "transformer" and self.embed_dim % self.heads:
                raise ValueError(f"heads={self.heads}: embed_dim={self.embed_dim} must be a multiple of the number "
                                 "of heads")
            return self
        if self.model in CHAR_ONLY_MODELS:
            raise ValueError(f"model={self.model}: predicts characters; {self.dataset} is not a character dataset "
                             "(names, reviews, text_file)")
        if text and self.model in IMAGE_ONLY_MODELS:
            raise ValueError(f"model={self.model}: {self.dataset} is a text dataset; text models are "
                             "bow, textcnn, rnn, gru, lstm")
        if not text and self.model in TEXT_ONLY_MODELS:
            raise ValueError(f"model={self.model}: reads text; {self.dataset} is an image dataset")
        return self

    # ---- serialisation ----
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Build from a dict, rejecting unknown keys (a typo must not silently fall back to a default)."""
        unknown = sorted(set(data) - set(_TYPES))
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}; known fields: {', '.join(_TYPES)}")
        config = cls(**{k: _coerce_number(k, v) for k, v in data.items()})
        return config.validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str) -> "RunConfig":
        if len(text) > MAX_TOML_CHARS:
            raise ValueError(f"the config is {len(text):,} characters long; a run's config is at most {MAX_TOML_CHARS:,}")
        try:
            data = tomllib.loads(text)
        except RecursionError:
            raise ValueError("the config nests tables or arrays too deeply to be a run's config") from None
        # accept either a flat file or one with a [run] table, which reads nicer in lesson files
        if set(data) == {"run"} and isinstance(data["run"], dict):
            data = data["run"]
        return cls.from_dict(data)

    def with_updates(self, **changes: Any) -> "RunConfig":
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def display_name(self) -> str:
        return self.name or f"{self.model}-{self.optimizer}-lr{self.lr:g}-s{self.seed}"


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a CLI `key=value` into a typed pair, e.g. 'lr=0.01' -> ('lr', 0.01)."""
    if "=" not in text:
        raise ValueError(f"--set {_shown(text)}: expected key=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    if key not in _TYPES:
        raise ValueError(f"--set {key}: unknown config field; known fields: {', '.join(_TYPES)}")
    return key, parse_value(key, raw)


def parse_value(key: str, raw: str) -> Any:
    """Convert the text of a value to the field's type, with a readable error."""
    kind = _TYPES[key]
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return raw
    except ValueError:
        raise ValueError(f"{key}={_shown(raw)}: expected {kind.__name__}") from None


def field_help() -> dict[str, str]:
    """The end-of-line comment of every field, for form help texts and `--help`."""
    import inspect

    help_text: dict[str, str] = {}
    for line in inspect.getsource(RunConfig).splitlines():
        stripped = line.strip()
        if ":" in stripped and "=" in stripped and "#" in stripped and not stripped.startswith("#"):
            name = stripped.split(":", 1)[0].strip()
            if name in _TYPES:
                help_text[name] = stripped.split("#", 1)[1].strip()
    return help_text


def _coerce_number(key: str, value: Any) -> Any:
    # JSON/TOML write 1e-3 as a float but 2.0 may come back as int 2 from hand-written files
    if _TYPES.get(key) is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


_TYPES: dict[str, type] = {f.name: {"str": str, "int": int, "float": float, "bool": bool}[f.type] for f in fields(RunConfig)}

_CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": tuple(DATASETS),
    "model": MODELS + TEXT_ONLY_MODELS + CHAR_ONLY_MODELS,
    "names_list": NAMES_LISTS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "clip": CLIPS,
    "activation": ACTIVATIONS,
    "early_stop_metric": STOP_METRICS,
    "device": DEVICES,
    "text_level": TEXT_LEVELS,
    "adapter": ADAPTERS,
}

# name -> (low, high, low_open, high_open)
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "val_fraction": (0.0, 0.9, True, False),
    "train_limit": (0, 10**9, False, False),
    "batch_size": (1, 8192, False, False),
    "augment_rotate": (0.0, 180.0, False, False),
    "augment_scale": (0.0, 0.9, False, False),
    "augment_translate": (0.0, 0.5, False, False),
    "hidden": (1, 8192, False, False),
    "embed_dim": (1, 1024, False, False),
    "block_size": (8, 1024, False, False),
    "context": (1, 64, False, False),
    "heads": (1, 64, False, False),
    "sample_temperature": (0.0, 10.0, True, False),
    "text_negation": (0.0, 1.0, False, False),
    "text_contrast": (0.0, 1.0, False, False),
    "text_filler": (0, 10, False, False),
    "vocab_size": (2, 1_000_000, False, False),
    "vocab_min_count": (1, 10**9, False, False),
    "depth": (1, 64, False, False),
    "width": (1, 512, False, False),
    "dropout": (0.0, 0.9, False, False),
    "lr": (0.0, 10.0, True, False),
    "momentum": (0.0, 1.0, False, True),
    "beta1": (0.0, 1.0, False, True),
    "beta2": (0.0, 1.0, False, True),
    "weight_decay": (0.0, 1.0, False, False),
    "warmup_steps": (0, 10**9, False, False),
    "step_every": (1, 10**9, False, False),
    "gamma": (0.0, 1.0, True, False),
    "decay_steps": (1, 10**9, False, False),
    "min_lr_ratio": (0.0, 1.0, False, False),
    "clip_value": (0.0, 1e6, True, False),
    "epochs": (1, 1000, False, False),
    "seed": (0, 2**31 - 1, False, False),
    "patience": (1, 1000, False, False),
    "min_delta": (0.0, 1e6, False, False),
    "ema_decay": (0.0, 1.0, False, True),
    "swa_start": (0, 1000, False, False),
    "layer_stats_every": (0, 10**9, False, False),
    "num_cpus": (0.0, 1024.0, True, False),
    "num_gpus": (0.0, 64.0, False, False),
    "train_per_class": (0, 100_000, False, False),
    "lora_rank": (1, 256, False, False),
    "lora_alpha": (0.0, 1024.0, True, False),
}


def _shown(value: Any) -> str:
    """repr() of a value for an error message, cut to a readable length (a value can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
