"""TrainLens training engine: configs, datasets, models, the training loop, explanations, the run store and workers.

Never imports streamlit: the engine runs in worker processes and the CLI. It is built in floors, and a module
imports only from its own floor or the ones below (tests/test_engine_import.py checks it), lowest first:
- the torch-free vocabulary every layer shares, at the top of the package: `records` (run statuses, metric keys,
  artifact names), `datasets` (the dataset registry), `paths`, `config` (RunConfig), `classroom`, `sanity_check`;
- `text/` (corpus, readers, vocabulary, text models), then `data/` (loaders, official-format readers, shapes,
  augmentation) and `diagnostics/` (evaluation reports, recipe checks, layer statistics, LR finder);
- the loop and its collaborators, at the top of the package: `train`, `models`, `optim`, `grads`, `checkpoints`,
  `sinks`, `stopping`, `validation`, with `race` and `lessons`;
- `explain/` (Captum methods, quality, rendering, images, pretrained models): it explains trained runs' models;
- `runs/` (store, runner, workers, jobs), which runs the loop; then `cli`.
Submodules are imported lazily by their users so that `import engine` stays cheap.
"""

__version__ = "0.1.0"
