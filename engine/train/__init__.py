"""Datasets from manifest.csv, augmentation, training loops, metrics, cross-validation and HPO."""
