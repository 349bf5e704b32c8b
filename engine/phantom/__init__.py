"""Synthetic chest-CT phantoms with known lesions: demo data, tests and 3-D training."""
