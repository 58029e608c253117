"""`trainlens sample RUN_ID [--n 20] [--temperature 0.8] [--prefix em] [--checkpoint best] [--seed 0] [--json]`:
samples written by a character run's checkpoint (engine.char_runs), one per line or as JSON."""

from __future__ import annotations

import json

from engine.cli.common import UsageError, checkpoint_arg, open_store, resolve


def register(sub) -> dict:
    sample = sub.add_parser("sample", help="strings written by a character-level run's checkpoint")
    sample.add_argument("run_id")
    sample.add_argument("--n", type=int, default=20, help="how many samples (1..1000)")
    sample.add_argument("--temperature", type=float, default=0.8,
                        help="below 1 sharper (likelier strings), above 1 wilder; (0, 10]")
    sample.add_argument("--prefix", default="", help="every sample starts with these characters")
    sample.add_argument("--checkpoint", default="best", help="epoch number, 'best' or 'last'")
    sample.add_argument("--seed", type=int, default=0, help="the same seed writes the same samples")
    sample.add_argument("--json", action="store_true", help="print JSON")
    return {"sample": cmd_sample}


def cmd_sample(args) -> int:
    from engine.char_runs import check_char_config, load_char_model, write

    store = open_store()
    run_id = resolve(store, args.run_id)
    run = store.get_run(run_id)
    try:
        check_char_config(run["config"] if run is not None else None, run_id)
        loaded = load_char_model(run_id, checkpoint_arg(args.checkpoint))
        result = write(loaded, args.n, args.temperature, args.prefix, args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"run_id": run_id, **result}))
    else:
        print("\n".join(s if s else "(empty: the model ended at once)" for s in result["samples"]))
    return 0
