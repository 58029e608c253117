"""The RunConfig form: one widget per config field, grouped, with the field's comment as help.

"Start from" picks a finished run to start from (`init_from`: a selectbox whose typing searches the runs' names and
ids), what stays frozen and the low-rank adapters; the class subset and K examples per class sit with the data.

Widgets get their bounds from engine.config so most bad values cannot be typed; whatever the
bounds cannot express is caught by RunConfig.validate and shown inline by the caller. Fields that
only matter for some settings (momentum for SGD with momentum, clip value when clipping...) are
shown only then, and keep their value while hidden.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine import config as cfg
from engine.config import RunConfig

GROUPS: dict[str, list[str]] = {
    "Data": ["dataset", "data_dir", "val_fraction", "train_limit", "classes", "train_per_class", "batch_size",
             "augment_rotate", "augment_scale",
             "augment_translate", "augment_flip", "text_negation", "text_contrast", "text_filler", "vocab_size",
             "vocab_min_count", "text_level", "text_column", "label_column", "names_list", "block_size"],
    "Model": ["model", "hidden", "depth", "width", "skip", "activation", "dropout", "embed_dim", "bidirectional",
              "context", "heads", "sample_temperature"],
    "Optimizer": ["optimizer", "lr", "momentum", "beta1", "beta2", "weight_decay"],
    "Schedule": ["schedule", "warmup_steps", "step_every", "gamma", "decay_steps", "min_lr_ratio"],
    "Regularisation": ["clip", "clip_value"],
    "Stopping & averaging": ["epochs", "early_stop", "early_stop_metric", "patience", "min_delta", "restore_best",
                             "ema", "ema_decay", "swa", "swa_start"],
    "Start from": ["init_from", "freeze", "adapter", "lora_rank", "lora_alpha"],
    "Run": ["seed", "name", "group", "device", "layer_stats_every", "num_cpus", "num_gpus"],
}

LABELS = {
    "data_dir": "data folder", "val_fraction": "validation fraction", "train_limit": "training examples cap",
    "augment_rotate": "rotation (degrees)", "augment_scale": "scale (± fraction)",
    "augment_translate": "translation (fraction of side)", "augment_flip": "horizontal flips",
    "lr": "learning rate", "beta1": "Adam β1", "beta2": "Adam β2", "weight_decay": "weight decay",
    "warmup_steps": "warmup steps", "step_every": "decay every (steps)", "gamma": "decay factor γ",
    "decay_steps": "decay steps", "min_lr_ratio": "final lr / lr", "clip": "gradient clipping",
    "clip_value": "clip threshold", "early_stop": "early stopping", "early_stop_metric": "monitor",
    "min_delta": "min improvement", "restore_best": "restore best weights", "ema": "EMA of weights",
    "ema_decay": "EMA decay", "swa": "SWA (stochastic weight averaging)", "swa_start": "SWA from epoch",
    "layer_stats_every": "layer statistics every K steps (0 = off)", "skip": "skip connections",
    "text_negation": "share of negated clauses", "text_contrast": "share of 'but' contrasts",
    "text_filler": "filler phrases (at most)", "vocab_size": "vocabulary size (at most)",
    "vocab_min_count": "min count of a word", "text_column": "text column", "label_column": "label column", "text_level": "tokens",
    "embed_dim": "embedding size", "bidirectional": "bidirectional",
    "num_cpus": "CPU cores (Ray)", "num_gpus": "GPUs (Ray; fractions share one)",
    "names_list": "names", "block_size": "block size (characters)", "context": "context (characters read)",
    "heads": "attention heads", "sample_temperature": "temperature of the recorded samples",
    "classes": "classes (e.g. 5-9 or 0,2,4; empty = all)", "train_per_class": "examples per class K (0 = all)",
    "init_from": "start from run", "freeze": "keep fixed (freeze)", "adapter": "adapters", "lora_rank": "LoRA rank r",
    "lora_alpha": "LoRA scale α",
}
RANDOM_START = ""  # init_from's first choice: random weights
FREEZE_CHOICES = ("none", "backbone", "all_but_head")  # and any pattern already in the form (a run copied, a URL)


def _visible(name: str, values: dict[str, Any]) -> bool:
    """Whether a field matters for the current values (hidden ones keep their value)."""
    model, optimizer, schedule = values.get("model"), values.get("optimizer"), values.get("schedule")
    dataset = values.get("dataset")
    text = dataset in cfg.DATASETS and cfg.DATASETS[dataset].kind == "text"
    chars = dataset in cfg.DATASETS and cfg.DATASETS[dataset].kind == "chars"
    rules = {
        "data_dir": dataset in ("mnist", "fashion_mnist", "cifar10", "imdb", "sst2", "ag_news", "text_csv",
                                "text_file"),
        **{name: text for name in ("text_level",)},
        **{name: text or dataset == "text_file" for name in ("vocab_size", "vocab_min_count")},
        "embed_dim": text or (chars and model != "bigram"),
        "names_list": dataset == "names",
        "block_size": chars and (model == "transformer" or dataset != "names"),
        "context": chars and model == "mlp",
        "heads": chars and model == "transformer",
        "sample_temperature": chars,
        **{name: not text and not chars for name in ("augment_rotate", "augment_scale", "augment_translate",
                                                      "augment_flip")},
        **{name: dataset == "sentiment" for name in ("text_negation", "text_contrast", "text_filler")},
        **{name: dataset == "text_csv" for name in ("text_column", "label_column")},
        "bidirectional": text and model in ("rnn", "gru", "lstm"),
        "hidden": model in ("mlp", "rnn", "gru", "lstm", "bow", "textcnn"),
        "depth": model in ("mlp", "resnet", "rnn", "gru", "lstm", "transformer"),
        "width": model == "resnet",
        "skip": model == "resnet",
        "activation": model == "mlp",
        "momentum": optimizer in ("momentum", "nesterov"),
        "beta1": optimizer in ("adam", "adamw"),
        "beta2": optimizer in ("adam", "adamw"),
        "step_every": schedule == "step",
        "gamma": schedule == "step",
        "decay_steps": schedule == "inverse_time",
        "min_lr_ratio": schedule == "cosine",
        "clip_value": values.get("clip") != "none",
        "early_stop_metric": values.get("early_stop"),
        "patience": values.get("early_stop"),
        "min_delta": values.get("early_stop"),
        "restore_best": values.get("early_stop"),
        "ema_decay": values.get("ema"),
        "swa_start": values.get("swa"),
        "freeze": bool(values.get("init_from")) or values.get("freeze") != "none",
        **{name: values.get("adapter") == "lora" for name in ("lora_rank", "lora_alpha")},
        **{name: not chars for name in ("classes", "train_per_class")},  # a character model's classes: its alphabet
    }
    return bool(rules.get(name, True))


FORM_KEY = "run_config_values"


def widget_key(name: str) -> str:
    return f"cfg_{name}"


def _widget(name: str, current: Any, help_text: str) -> Any:
    key = widget_key(name)
    label = LABELS.get(name, name.replace("_", " "))
    if key not in st.session_state:
        st.session_state[key] = current
    choices = cfg._CHOICES.get(name)
    if name == "model":  # only the models that read the chosen dataset (text or images)
        choices = _model_choices(st.session_state.get(widget_key("dataset"), RunConfig().dataset))
        if st.session_state[key] not in choices:  # switched between text and images: the closest fitting model
            st.session_state[key] = "gru" if "gru" in choices else choices[0]
    if name == "init_from":
        return _start_from(label, key, help_text)
    if name == "freeze":
        choices = FREEZE_CHOICES + ((st.session_state[key],) if st.session_state[key] not in FREEZE_CHOICES else ())
    kind = cfg._TYPES[name]
    if choices:
        return st.selectbox(label, choices, key=key, help=help_text)
    if kind is bool:
        return st.toggle(label, key=key, help=help_text)
    if kind is str:
        return st.text_input(label, key=key, help=help_text)
    low, high, low_open, _ = cfg._RANGES.get(name, (None, None, False, False))
    if kind is int:
        return int(st.number_input(label, min_value=int(low) if low is not None else None,
                                   max_value=int(high) if high is not None else None, step=1, key=key, help=help_text))
    # floats: an open lower bound (lr > 0) cannot be a widget bound, validation reports it instead
    return float(st.number_input(label, min_value=None if low is None or low_open else float(low),
                                 max_value=float(high) if high is not None else None, format="%g",
                                 step=_float_step(name), key=key, help=help_text))


def _start_from(label: str, key: str, help_text: str) -> str:
    """A searchable selectbox of the finished training runs (newest first), random weights first; its value is an
    init_from (a run id; the store resolves it to the run's best weights)."""
    from app.ui.state import runs_frame
    from engine.records import SUCCEEDED, RunKind

    runs = runs_frame()
    done = runs[(runs["kind"] == RunKind.TRAIN) & runs["status"].isin(list(SUCCEEDED))]
    names = {row["run_id"]: f"{row['name']} · {row['run_id'][:8]} · {row.get('cfg.dataset', '')} "
                            f"{row.get('cfg.model', '')}" for row in done.to_dict(orient="records")}
    options = [RANDOM_START, *names]
    if st.session_state[key] not in options:  # a run since deleted, or a RUN_ID:epochN typed elsewhere: kept as is
        options.append(st.session_state[key])
    return st.selectbox(label, options, key=key, help=help_text + " Type to search the finished runs.",
                        format_func=lambda run_id: "random weights (no run)" if run_id == RANDOM_START
                        else names.get(run_id, run_id))


def _model_choices(dataset: str) -> tuple[str, ...]:
    kind = cfg.DATASETS[dataset].kind if dataset in cfg.DATASETS else "image"
    return {"text": cfg.TEXT_MODELS, "chars": cfg.CHAR_MODELS}.get(kind, cfg.MODELS)


def _float_step(name: str) -> float:
    return {"lr": 1e-4, "weight_decay": 1e-4, "augment_rotate": 5.0, "clip_value": 0.1, "min_delta": 1e-3,
            "num_cpus": 1.0, "num_gpus": 0.25}.get(name, 0.01)


def config_form(columns: int = 2) -> tuple[RunConfig | None, str | None]:
    """Render the grouped form; returns (config, None) when valid, else (None, error message)."""
    help_text = cfg.field_help()
    # The plain dict in FORM_KEY is the form's memory: Streamlit forgets the state of widgets that are not
    # rendered in a run, so hidden fields (momentum while Adam is chosen...) would otherwise reset.
    values = dict(st.session_state.get(FORM_KEY) or RunConfig().to_dict())
    for name in values:
        if widget_key(name) in st.session_state:
            values[name] = st.session_state[widget_key(name)]
    tabs = st.tabs(list(GROUPS))
    for tab, (group, names) in zip(tabs, GROUPS.items()):
        with tab:
            cols = st.columns(columns)
            shown = [n for n in names if _visible(n, values)]
            for index, name in enumerate(shown):
                with cols[index % columns]:
                    values[name] = _widget(name, values[name], help_text.get(name, ""))
    st.session_state[FORM_KEY] = values
    try:
        return RunConfig.from_dict(values), None
    except ValueError as exc:
        return None, str(exc)

