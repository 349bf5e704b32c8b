"""The file format must not leak the label (covid-ct-2d: RGBA PNG only in COVID, JPEG only in NonCOVID).

A dataset is built whose *only* class signal is the file format: identical image content distribution, COVID
saved as RGBA PNG, NonCOVID as RGB JPEG, random sizes.  A CNN trained on the canonical form must stay at
chance on held-out images.  The positive control shows the experiment has power: with a naive reader that
averages all channels (alpha included) the same CNN separates the classes almost perfectly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.preprocess import Preprocess
from engine.train.data import TensorData, read_image_grey
from engine.train.loop import TrainConfig, fit, predict_proba

from .conftest import TinyNet, phantom_image, save_as


def _format_only_dataset(root: Path, n: int, seed: int) -> list[tuple[Path, int]]:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        label = i % 2                                   # 1 = COVID
        size = (int(rng.integers(70, 150)), int(rng.integers(70, 150)))
        img = phantom_image(rng, size, covid=bool(rng.integers(0, 2)))   # content independent of the label
        if label == 1:
            path = save_as(img, root / f"{i}", "png-rgba")
        else:
            im = Image.fromarray(np.stack([img] * 3, -1), "RGB")
            path = root / f"{i}.jpg"
            im.save(path, quality=75)
        items.append((path, label))
    return items


def _naive_read(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path)).astype(np.float32)
    return np.clip(a.mean(-1), 0, 255).astype(np.uint8)   # averages alpha in: the kind of bug we guard against


def _tensors(items, pre: Preprocess, reader) -> TensorData:
    x = torch.cat([pre.unit_image(reader(p))[0] for p, _ in items]).to(torch.float16)
    y = torch.tensor([lab for _, lab in items])
    return TensorData(x, y, [str(p) for p, _ in items], [str(p) for p, _ in items], ("NonCOVID", "COVID"), pre)


def _held_out_accuracy(tmp_path: Path, reader) -> float:
    pre = Preprocess.for_model("lightsqueeze_proposed", input_size=(48, 48))
    train = _tensors(_format_only_dataset(tmp_path / "train", 64, seed=1), pre, reader)
    test = _tensors(_format_only_dataset(tmp_path / "test", 60, seed=2), pre, reader)
    torch.manual_seed(0)
    model = TinyNet(width=12, dropout=0.0)
    cfg = TrainConfig(epochs=6, batch_size=16, optimizer="adam", lr=3e-3, augment="none", select="last",
                      channels_last=False)
    fit(model, train, None, cfg, None, log=lambda s: None)
    probs = predict_proba(model, test, channels_last=False)
    return float((probs.argmax(1) == test.y.numpy()).mean())


def test_canonical_form_removes_the_format_signal(tmp_path: Path) -> None:
    acc = _held_out_accuracy(tmp_path, read_image_grey)
    # 60 balanced test images: chance is 0.5 (95 % of chance results lie within about 0.37–0.63)
    assert acc < 0.7, f"a CNN told RGBA-PNG from RGB-JPEG images with accuracy {acc:.2f}: the format leaks"


def test_positive_control_naive_reader_leaks(tmp_path: Path) -> None:
    acc = _held_out_accuracy(tmp_path, _naive_read)
    assert acc > 0.9, f"the leak experiment lacks power (naive reader accuracy {acc:.2f})"


def test_same_picture_same_tensor_in_every_format(tmp_path: Path) -> None:
    img = phantom_image(np.random.default_rng(0), (120, 100), covid=True)
    pre = Preprocess.for_model("lightsqueeze_proposed", input_size=(64, 64))
    ref, _ = pre.image(img)
    for fmt in ("png-l", "png-rgb", "png-rgba", "png-la", "png-16"):
        x, _ = pre.image(read_image_grey(save_as(img, tmp_path / fmt, fmt)))
        assert torch.equal(x, ref), fmt
    for fmt in ("jpeg-l", "jpeg-rgb"):
        x, _ = pre.image(read_image_grey(save_as(img, tmp_path / fmt, fmt)))
        # after the antialiased resize JPEG differs from the original by well under one grey level on average
        assert float((x - ref).abs().mean()) * 0.25 * 255 < 1.0, fmt
