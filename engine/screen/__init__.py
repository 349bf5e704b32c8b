"""Batch screening: discover -> load -> preprocess -> infer -> explain -> results DB / CSV / PDF report."""
