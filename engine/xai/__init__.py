"""Explainers: CAM, Grad-CAM, Grad-CAM++, Layer-CAM and activation maps on the input's own grid."""
