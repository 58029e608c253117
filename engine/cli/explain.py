"""The explanation commands: `explain` (a run's checkpoint, on an image or a typed text) and `explain-model`
(a model TrainLens did not train)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.cli.common import UsageError, checkpoint_arg, json_default, open_store, prog, resolve
from engine.records import RunKind


def register(sub) -> dict:
    """Add the explanation commands' parsers to `sub`; their functions by command name."""
    explain = sub.add_parser("explain", help="attribution heatmap of an image for a run's checkpoint")
    explain.add_argument("run_id")
    explain.add_argument("image", nargs="?", default=None, help="image file (image runs)")
    explain.add_argument("--text", default=None, help="text to explain, token by token (text runs)")
    explain.add_argument("--json", action="store_true", help="with --text: print JSON")
    explain.add_argument("--method", default="saliency")
    explain.add_argument("--target", type=int, default=None, help="class index (default: the predicted class)")
    explain.add_argument("--checkpoint", default="best",
                         help="'best', 'last', or an epoch number: N = after epoch N, 0 = before training")
    explain.add_argument("--out", default=None, help="PNG file to write (image runs)")
    own = sub.add_parser("explain-model", help="attribution heatmap of an image for a model TrainLens did not train")
    own.add_argument("image")
    own.add_argument("--arch", help="torchvision architecture of --weights, e.g. resnet18")
    own.add_argument("--weights", help="safetensors file or a PyTorch state dict (read with weights_only=True)")
    own.add_argument("--program", help=".pt2 exported program in a folder listed in TRAINLENS_MODEL_DIRS")
    own.add_argument("--config", help="JSON: input_size, mean, std, classes (default: ImageNet preparation)")
    own.add_argument("--method", default="saliency")
    own.add_argument("--target", type=int, default=None, help="class index (default: the predicted class)")
    own.add_argument("--out", required=True, help="PNG file to write")
    return {"explain": cmd_explain, "explain-model": cmd_explain_model}


def cmd_explain(args) -> int:
    from engine.explain.render import explain_to_png

    store = open_store()
    run_id = resolve(store, args.run_id)
    if args.text is not None:  # a text run: one score per token (engine.explain.text_run)
        from engine.explain.text_run import explain_text_run, format_scores

        which = checkpoint_arg(args.checkpoint)
        try:
            result = explain_text_run(run_id, args.text, args.method, args.target, which)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(json.dumps(result) if args.json else format_scores(result))
        return 0
    run = store.get_run(run_id)
    from engine.datasets import dataset_info

    if run is not None and run["kind"] == RunKind.SCRIPT:
        _check_script_model(store, run_id)
    elif run is not None and run["config"] is not None and dataset_info(run["config"].dataset).kind == "text":
        raise UsageError(f"run {run_id} reads text: explain a sentence with --text \"...\" (no image, no --out)")
    elif run is not None and run["config"] is not None and dataset_info(run["config"].dataset).kind == "chars":
        raise UsageError(f"run {run_id} writes characters: see what it writes with `{prog()} sample {run_id[:6]}`; "
                         "its attention and context attributions are on the Explain page")
    if args.image is None or args.out is None:
        raise UsageError("explain needs an IMAGE and --out FILE.png (or --text \"...\" for a text run)")
    from engine.explain.images import MAX_BYTES

    if not Path(args.image).is_file():
        raise UsageError(f"{args.image}: no such file")
    if Path(args.image).stat().st_size > MAX_BYTES:  # before reading it: a 3 GB file must not be read to be refused
        raise UsageError(f"{args.image}: {Path(args.image).stat().st_size:,} bytes; images up to "
                         f"{MAX_BYTES // 2**20} MB are explained")
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file name such as {out / 'explanation.png'}")
    which = checkpoint_arg(args.checkpoint)
    result = explain_to_png(run_id, args.image, args.method, args.target, which, args.out)
    print(json.dumps(result, default=json_default) if isinstance(result, dict) else result)
    return 0


def cmd_explain_model(args) -> int:
    from engine.explain.own_model import OwnModelError, explain_own_to_png

    if not Path(args.image).is_file():
        raise UsageError(f"{args.image}: no such file")
    try:
        result = explain_own_to_png(args.image, args.method, architecture=args.arch, weights=args.weights,
                                    program=args.program, config=args.config, target=args.target, out=args.out)
    except OwnModelError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(result, default=json_default))
    return 0


def _check_script_model(store, run_id: str) -> None:
    """A script's run is explained from the zoo model its script saved (run.log_model); UsageError otherwise, with
    the command that explains what it did save."""
    from engine.records import LOGGED_MODEL

    record = store.get_artifact(run_id, LOGGED_MODEL) or {}
    if record.get("kind") == "zoo":
        return
    if record.get("kind") == "torchvision":
        architecture = record.get("architecture")
        raise UsageError(f"run {run_id}'s script saved a torchvision {architecture}: explain it with "
                         f"`{prog()} explain-model IMAGE --arch {architecture} --weights {record.get('path')}`")
    raise UsageError(f"run {run_id} was trained by a script that saved no model: call run.log_model(model) in it "
                     f"(TrainLens zoo models and torchvision classifiers), or use `{prog()} explain-model`")
