"""Augmentation policies and batch schedules."""

from __future__ import annotations

import pytest
import torch

from engine.train.augment import POLICIES, Augment, affine, apply_offline, seeded_generator
from engine.train.sampling import rebalanced_batches, shuffled_batches


def _marker(h: int = 33, w: int = 33) -> torch.Tensor:
    x = torch.zeros(1, 1, h, w)
    x[0, 0, 10:14, 18:22] = 1.0   # a square up-right of the centre
    return x


def _centroid(x: torch.Tensor) -> tuple[float, float]:
    m = x[0, 0]
    ys, xs = torch.meshgrid(torch.arange(m.shape[0]), torch.arange(m.shape[1]), indexing="ij")
    s = m.sum()
    return float((ys * m).sum() / s), float((xs * m).sum() / s)


def test_affine_identity_rotation_zoom_shift_flip() -> None:
    x = _marker()
    one, zero = torch.ones(1), torch.zeros(1)
    assert torch.allclose(affine(x, zero, one, torch.zeros(1, 2)), x, atol=1e-5)
    # +90° turns the picture clockwise as displayed (row 0 at the top)
    rot = affine(x, torch.tensor([90.0]), one, torch.zeros(1, 2))
    assert torch.allclose(rot, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5)
    # zoom 2× moves the marker away from the centre by a factor 2
    cy, cx = _centroid(x)
    zy, zx = _centroid(affine(x, zero, torch.tensor([2.0]), torch.zeros(1, 2)))
    assert abs((zx - 16) - 2 * (cx - 16)) < 1.0 and abs((zy - 16) - 2 * (cy - 16)) < 1.0
    # shift (+0.1, 0) moves content right by 10 % of the width
    sy, sx = _centroid(affine(x, zero, one, torch.tensor([[0.1, 0.0]])))
    assert abs(sx - cx - 3.3) < 0.5 and abs(sy - cy) < 0.3
    hf = affine(x, zero, one, torch.zeros(1, 2), hflip=torch.tensor([True]))
    assert torch.allclose(hf, torch.flip(x, dims=(3,)), atol=1e-5)


@pytest.mark.parametrize("policy", POLICIES)
def test_policies_are_deterministic_and_in_range(policy: str) -> None:
    x = torch.rand(6, 1, 24, 24)
    aug = Augment(policy)
    a = aug(x, seeded_generator(1, 2, 3))
    b = aug(x, seeded_generator(1, 2, 3))
    assert torch.equal(a, b) and a.shape == x.shape
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    if policy != "none":
        assert not torch.equal(a, aug(x, seeded_generator(1, 2, 4)))


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augment("cutmix")


def test_p0_offline_copies_fixed_and_copy_zero_is_the_original() -> None:
    x = torch.rand(4, 1, 20, 20)
    aug = Augment("p0")
    assert aug.offline_copies == 4
    idx = torch.tensor([0, 1, 2, 3])
    c0 = apply_offline(aug, x, idx, torch.zeros(4, dtype=torch.long), seed=5)
    assert torch.equal(c0, x)
    c2 = apply_offline(aug, x, idx, torch.full((4,), 2), seed=5)
    again = apply_offline(aug, x[[2, 0]], idx[[2, 0]], torch.full((2,), 2), seed=5)  # order-independent
    assert torch.equal(again, c2[[2, 0]])
    assert not torch.allclose(c2, x)


def test_p0_draws_follow_the_paper_ranges() -> None:
    # a bright disc centred in a dark frame: zoom U(1.1, 1.3) enlarges its area by 1.21–1.69×
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disc = (((yy - 31.5) ** 2 + (xx - 31.5) ** 2) < 10 ** 2).float()[None, None]
    aug = Augment("p0", noise_std=0.0)
    for s in range(10):
        out = aug(disc, seeded_generator(s), copy=torch.ones(1, dtype=torch.long))
        ratio = float(out.sum() / disc.sum())
        assert 1.15 < ratio < 1.75, ratio


def test_shuffled_batches_cover_every_copy_once() -> None:
    batches = shuffled_batches(10, 4, seeded_generator(0), copies=4)
    pairs = [(int(i), int(c)) for idx, cp in batches for i, c in zip(idx, cp)]
    assert sorted(pairs) == [(i, c) for i in range(10) for c in range(4)]
    assert all(len(b[0]) >= 2 for b in batches)
    # a lone last sample is dropped (BatchNorm cannot train on one)
    assert sum(len(b[0]) for b in shuffled_batches(9, 4, seeded_generator(0))) == 8


def test_rebalanced_batches_hold_the_covid_share() -> None:
    y = torch.tensor([1] * 5 + [0] * 45)
    batches = rebalanced_batches(y, 8, seeded_generator(0), positive=1, positive_share=0.3)
    assert len(batches) == 7  # ceil(50 / 8)
    for idx, _ in batches:
        assert len(idx) == 8
        assert int((y[idx] == 1).sum()) >= 2          # round(0.3 * 8) = 2 overwritten slots
    again = rebalanced_batches(y, 8, seeded_generator(0), positive=1, positive_share=0.3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    share = sum(int((y[i] == 1).sum()) for i, _ in batches) / (8 * len(batches))
    assert share == pytest.approx(2 / 8)   # exactly the overwritten slots, vs 10 % in the data
