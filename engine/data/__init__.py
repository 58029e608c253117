"""Datasets: the in-memory loader and batches, official-format readers, shapes, augmentation.

The static facts of every dataset (the registry) live on the ground floor, in `engine.datasets`."""
