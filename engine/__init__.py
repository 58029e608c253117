"""TrainLens training engine: configs, datasets, models, the training loop, the run store and workers.

Never imports streamlit: the engine runs in worker processes and the CLI. Sub-packages: `data/` (loaders,
official-format readers, shapes, augmentation), `explain/` (Captum methods, quality, rendering, images,
pretrained models), `diagnostics/` (evaluation, recipe checks, layer statistics, LR finder), `runs/` (store,
runner, workers, jobs); the loop and its collaborators (`config`, `train`, `models`, `optim`, `grads`,
`checkpoints`) sit at the top with `records`, the torch-free vocabulary every layer shares, and `datasets`, the
torch-free dataset registry.
Submodules are imported lazily by their users so that `import engine` stays cheap.
"""

__version__ = "0.1.0"
