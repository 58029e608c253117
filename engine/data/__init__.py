"""Datasets: the registry, the in-memory loader and batches, official-format readers, shapes, augmentation."""
