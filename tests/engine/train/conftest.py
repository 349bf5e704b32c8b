"""Fixtures for the training tests: synthetic manifest datasets and a tiny registered CNN.

The synthetic "CT" images are smooth random textures inside an elliptic body with two dark lungs; the COVID
class adds a few brighter blobs (ground-glass-like) inside the lungs.  Formats are mixed per image so no test
accidentally relies on a single file type.
"""

from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from engine.models import registry
from engine.models.registry import ModelConfig

TINY = "_lunglens_test_tiny"


def phantom_image(rng: np.random.Generator, size: tuple[int, int], covid: bool) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2, w / 2
    body = ((yy - cy) / (0.42 * h)) ** 2 + ((xx - cx) / (0.46 * w)) ** 2 < 1
    img = np.where(body, 150.0, 10.0)
    for sx in (-1, 1):
        lung = ((yy - cy) / (0.3 * h)) ** 2 + ((xx - cx - sx * 0.2 * w) / (0.15 * w)) ** 2 < 1
        img = np.where(lung, 40.0, img)
        if covid:
            for _ in range(3):
                by = cy + rng.uniform(-0.2, 0.2) * h
                bx = cx + sx * 0.2 * w + rng.uniform(-0.08, 0.08) * w
                r = rng.uniform(0.04, 0.08) * min(h, w)
                blob = ((yy - by) ** 2 + (xx - bx) ** 2) < r * r
                img = np.where(blob & lung, 110.0, img)
    img = img + rng.normal(0, 6, size=(h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def save_as(img: np.ndarray, path: Path, fmt: str) -> Path:
    """fmt: png-l, png-rgb, png-rgba, png-la, png-p, png-16, jpeg-l, jpeg-rgb."""
    if fmt == "png-l":
        Image.fromarray(img, "L").save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if fmt == "png-rgb":
        Image.fromarray(np.stack([img] * 3, -1), "RGB").save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if fmt == "png-rgba":
        a = np.full_like(img, 255)
        Image.fromarray(np.stack([img, img, img, a], -1), "RGBA").save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if fmt == "png-la":
        Image.fromarray(img, "L").convert("LA").save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if fmt == "png-p":
        Image.fromarray(img, "L").convert("P").save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if fmt == "png-16":
        Image.fromarray(img.astype(np.uint16) * 257).save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if fmt == "jpeg-l":
        Image.fromarray(img, "L").save(path.with_suffix(".jpg"), quality=92)
        return path.with_suffix(".jpg")
    if fmt == "jpeg-rgb":
        Image.fromarray(np.stack([img] * 3, -1), "RGB").save(path.with_suffix(".jpg"), quality=92)
        return path.with_suffix(".jpg")
    raise ValueError(fmt)


def write_dataset(root: Path, n_per_class: int = 24, size=(64, 64), seed: int = 0, patients_per: int = 2,
                  formats=("png-rgb", "jpeg-rgb", "png-rgba", "png-l"), val_fraction: float = 0.25,
                  masks: bool = False) -> Path:
    """A manifest dataset: file,label,patient_id,split[,mask_binary]; ``patients_per`` images per patient."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    if masks:
        (root / "masks").mkdir(exist_ok=True)
    rows = []
    k = 0
    for label in ("COVID", "NonCOVID"):
        n_pat = n_per_class // patients_per
        for p in range(n_pat):
            split = "val" if p < int(round(val_fraction * n_pat)) else "train"
            for j in range(patients_per):
                img = phantom_image(rng, size, label == "COVID")
                fmt = formats[k % len(formats)]
                path = save_as(img, root / "images" / f"{label}_{p}_{j}", fmt)
                row = {"file": f"images/{path.name}", "label": label if k % 3 else label.lower(),
                       "patient_id": f"{label}-p{p}", "split": split}
                if masks:
                    m = (np.abs(img.astype(int) - 110) < 20).astype(np.uint8) * 255
                    Image.fromarray(m, "L").save(root / "masks" / f"{label}_{p}_{j}.png")
                    row["mask_binary"] = f"masks/{label}_{p}_{j}.png"
                rows.append(row)
                k += 1
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


class TinyNet(nn.Module):
    """A small CAM-able CNN (GAP -> Linear) for fast tests."""

    def __init__(self, num_classes: int = 2, in_chans: int = 1, width: int = 8, dropout: float = 0.1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.features(x)).flatten(1)))


@contextmanager
def tiny_registered() -> Iterator[str]:
    """Register ``TinyNet`` under a test-only name on a copy of the registry (undone on exit; re-entrant)."""
    with pytest.MonkeyPatch.context() as mp:
        registry._ensure_loaded()
        mp.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
        mp.setattr(registry, "_ALIASES", dict(registry._ALIASES))
        if TINY not in registry._REGISTRY:
            cfg = ModelConfig(name=TINY, family="test", paper="-", input_size=(48, 48), cam_layer="features",
                              classifier="fc", cam_kind="cam")

            @registry.register_model(cfg)
            def _tiny(num_classes: int = 2, in_chans: int = 1, **kw) -> nn.Module:
                return TinyNet(num_classes, in_chans, **kw)

        yield TINY


@pytest.fixture
def tiny_model() -> Iterator[str]:
    with tiny_registered() as name:
        yield name


@pytest.fixture
def synth_data(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "synth")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dataset caches of tests go to the test's tmp folder, never to the user's cache."""
    monkeypatch.setenv("LUNGLENS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine OpenMP spin-waiting
    makes two threads several times slower; restore the session's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
