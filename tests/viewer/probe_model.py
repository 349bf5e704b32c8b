"""Tiny networks whose heatmaps we control, registered only while a test needs them, and their weights.

``lesion_probe`` (2-D) / ``lesion_probe3d`` (3-D) are hand-set detectors of ground-glass HU: a 1×1 "hat"
responds to inputs around -450 HU (the lung window maps -600..-300 HU to 0..0.8 after normalisation), an
average pool turns thin partial-volume edges into weak responses and solid blobs into strong ones, and a
linear head makes "more ground glass" mean "more COVID".  So the CAM / Grad-CAM of a correct viewer must light
up on the lesion and nowhere else -- a transposed, flipped or shifted overlay fails the tests.

``delay_s`` makes every forward pass sleep (a slow model for cancel / close-while-running tests); ``calls``
counts forward passes.  The networks are weights-compatible with ``engine.weights`` (safetensors + manifest).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from engine.models import registry
from engine.models.registry import ModelConfig, register_model

PROBE_2D = "lesion_probe"
PROBE_2D_B = "lesion_probe_b"      # same detector, coarser pooling: a second, different model for compare
PROBE_3D = "lesion_probe3d"
CLASSES = ["NonCOVID", "COVID"]


class LesionProbe(nn.Module):
    calls = 0

    def __init__(self, num_classes: int = 2, in_chans: int = 1, spatial_dims: int = 2, pool: int = 5,
                 delay_s: float = 0.0):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        avg = nn.AvgPool2d if spatial_dims == 2 else nn.AvgPool3d
        self.delay_s = float(delay_s)
        self.features = nn.Sequential(
            conv(in_chans, 3, 1), nn.ReLU(), conv(3, 1, 1, bias=False), nn.ReLU(),
            avg(pool, stride=1, padding=pool // 2, count_include_pad=False))
        self.pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(1, num_classes)
        with torch.no_grad():
            band, mix = self.features[0], self.features[2]
            band.weight.fill_(1.0 / in_chans)
            band.bias.copy_(torch.tensor([0.0, -0.4, -0.8]))     # ramps at x = 0, 0.4, 0.8 (normalised input)
            mix.weight.copy_(torch.tensor([2.5, -5.0, 2.5]).view(1, 3, *([1] * spatial_dims)))  # hat, peak 1
            self.fc.weight.copy_(torch.tensor([[-30.0], [30.0]])[:num_classes])
            self.fc.bias.copy_(torch.tensor([1.5, -1.5])[:num_classes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.fc(self.pool(self.features(x)).flatten(1))


def _config(name: str, spatial_dims: int, input_size: tuple[int, ...]) -> ModelConfig:
    return ModelConfig(name=name, family="test", paper="test", spatial_dims=spatial_dims, input_size=input_size,
                       paper_in_chans=1, cam_layer="features", classifier="fc", cam_kind="cam",
                       description="ground-glass detector for viewer tests")


_SPECS = {
    PROBE_2D: (2, (48, 64), 5),
    PROBE_2D_B: (2, (48, 64), 9),
    PROBE_3D: (3, (8, 40, 48), 3),
}


@contextmanager
def registered_probes():
    """Register the probe networks for the duration of the block (then remove them from the registry)."""
    added = []
    for name, (dims, size, pool) in _SPECS.items():
        if name in registry.list_models():
            continue

        def factory(num_classes: int = 2, in_chans: int = 1, _dims=dims, _pool=pool, **cfg) -> nn.Module:
            cfg.setdefault("pool", _pool)
            return LesionProbe(num_classes, in_chans, spatial_dims=_dims, **cfg)

        register_model(_config(name, dims, size))(factory)
        added.append(name)
    try:
        yield
    finally:
        for name in added:
            registry._REGISTRY.pop(name, None)


def save_probe(root: Path, name: str = PROBE_2D, *, delay_s: float = 0.0, folder: str | None = None) -> Path:
    """Weights folder ``root/<folder or name>`` for a probe (call inside ``registered_probes``)."""
    from engine.models import create_model
    from engine.preprocess import Preprocess
    from engine.weights import save_weights

    kwargs = {"num_classes": 2, "in_chans": 1}
    if delay_s:
        kwargs["delay_s"] = delay_s
    model = create_model(name, **kwargs)
    out = Path(root) / (folder or name)
    save_weights(model, out, model_name=name, create_kwargs=kwargs, preprocess=Preprocess.for_model(name),
                 classes=CLASSES, metrics={"auc": 0.5}, data={"dataset": "none: hand-set weights (test)"})
    return out


def lesion_phantom(shape=(16, 84, 120), spacing=(3.5, 1.3, 0.9), seed=5, z=None, radii_mm=(8.0, 9.0, 9.0)):
    """A phantom with one ground-glass lesion deep in the patient's right lung (small x), on slice ``z``.

    Non-square slices and non-isotropic voxels on purpose.  Returns (phantom, (z, y, x) lesion centre).
    """
    from engine.phantom import make_phantom
    from engine.phantom.anatomy import LesionSpec

    z = shape[0] // 2 if z is None else z
    healthy = make_phantom(shape=shape, spacing=spacing, seed=seed, lesions=0)
    lung = healthy.lung_mask[z].astype(bool).copy()
    lung[:, shape[2] // 2:] = False                       # the patient's right lung only
    depth = np.zeros(lung.shape, dtype=int)
    core = lung.copy()
    while core.any():                                    # erosion depth without scipy
        depth += core
        core = core & np.roll(core, 1, 0) & np.roll(core, -1, 0) & np.roll(core, 1, 1) & np.roll(core, -1, 1)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    centre = (int(z), int(y), int(x))
    phantom = make_phantom(shape=shape, spacing=spacing, seed=seed,
                           lesions=[LesionSpec(center=centre, radii_mm=radii_mm, kind="ggo", hu=-450.0)])
    return phantom, centre
