"""TrainLens training engine: configs, datasets, models, the training loop, the run store and workers.

Never imports streamlit: the engine runs in worker processes, the CLI and Ray tasks alike.
Submodules are imported lazily by their users so that `import engine` stays cheap.
"""

__version__ = "0.1.0"
