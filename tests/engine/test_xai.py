"""Explainers: localisation on synthetic inputs (2D and 3D, non-square / non-cubic), CAM identities, shapes,
layer listing, and an optional Grad-CAM cross-check against MONAI.

Axis swaps are the field's most common heatmap bug, so every localisation test uses a grid whose axes all
differ in length and puts the evidence in a corner that a transpose or flip would move.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.models import create_model
from engine.xai import (
    METHODS,
    ExplainError,
    activation_maps,
    default_layer,
    explain,
    list_layers,
    normalise_map,
    tile_maps,
)


class BlobNet(nn.Module):
    """A tiny conv net whose class 1 means "a bright blob somewhere" (2D or 3D).

    ``deterministic=True`` sets the weights by hand (channel 0 = local brightness detector, class-1 row reads
    it), so the expected CAM is known exactly.  Otherwise it is trained in ``train_blobnet``.
    """

    def __init__(self, dims: int = 2, deterministic: bool = True):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.stem = conv(1, 8, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.block = conv(8, 8, 3, padding=1)
        self.block_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, 2)
        if deterministic:
            with torch.no_grad():
                for m in (self.stem, self.block):
                    m.weight.zero_()
                    m.bias.zero_()
                self.stem.weight[0].fill_(1.0 / self.stem.weight[0].numel())
                self.block.weight[0, 0].fill_(1.0 / self.block.weight[0, 0].numel())
                self.fc.weight.zero_()
                self.fc.bias.zero_()
                self.fc.weight[1, 0] = 10.0
                self.fc.weight[0, 0] = -10.0
        self.cam_override = ("block_act", "fc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.block_act(self.block(self.act(self.stem(x))))
        return self.fc(torch.flatten(self.pool(f), 1))


def blob_input(shape: tuple[int, ...], centre: tuple[int, ...], radius: float = 2.5) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    d2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    img = torch.exp(-d2 / (2 * radius ** 2))
    return img[None, None]


def train_blobnet(dims: int, shape: tuple[int, ...], steps: int = 60) -> BlobNet:
    """Train a randomly initialised BlobNet: class 1 = blob anywhere, class 0 = noise only.

    Tiny tensors: one thread is ~10x faster than two on a busy shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_blobnet(dims, shape, steps)
    finally:
        torch.set_num_threads(threads)


def _train_blobnet(dims: int, shape: tuple[int, ...], steps: int) -> BlobNet:
    torch.manual_seed(0)
    net = BlobNet(dims, deterministic=False)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        xs, ys = [], []
        for i in range(16):
            noise = 0.05 * torch.randn((1, 1) + shape)
            if i % 2:
                centre = tuple(int(rng.integers(3, s - 3)) for s in shape)
                xs.append(blob_input(shape, centre) + noise)
                ys.append(1)
            else:
                xs.append(noise)
                ys.append(0)
        loss = F.cross_entropy(net(torch.cat(xs)), torch.tensor(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def peak(m: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(m)), m.shape))


def near(a: tuple[int, ...], b: tuple[int, ...], tol: int) -> bool:
    return all(abs(i - j) <= tol for i, j in zip(a, b))


# ------------------------------------------------------------------------------------------------ 2D / 3D
@pytest.mark.parametrize("method", METHODS)
def test_2d_map_peaks_at_blob_on_non_square_grid(method: str) -> None:
    net = BlobNet(2).eval()
    shape, centre = (40, 64), (6, 57)          # top-right: a transpose would land at (57, 6) — off-grid
    m = explain(net, blob_input(shape, centre), method, target=1)
    assert m.shape == (1, 40, 64) and m.dtype == np.float32
    assert near(peak(m[0]), centre, 3), (method, peak(m[0]))


@pytest.mark.parametrize("method", METHODS)
def test_3d_map_peaks_at_blob_on_non_cubic_grid(method: str) -> None:
    net = BlobNet(3).eval()
    shape, centre = (12, 20, 28), (2, 16, 4)   # every axis different; corner not on any diagonal
    m = explain(net, blob_input(shape, centre, radius=2.0), method, target=1)
    assert m.shape == (1, 12, 20, 28)
    assert near(peak(m[0]), centre, 2), (method, peak(m[0]))


SHAPE_2D, SHAPE_3D = (36, 52), (10, 18, 26)


@pytest.fixture(scope="module")
def trained2d() -> BlobNet:
    return train_blobnet(2, SHAPE_2D, steps=40)


@pytest.fixture(scope="module")
def trained3d() -> BlobNet:
    return train_blobnet(3, SHAPE_3D, steps=30)


@pytest.mark.parametrize("method", METHODS)
def test_trained_random_init_net_localises_2d(method: str, trained2d: BlobNet) -> None:
    shape, net = SHAPE_2D, trained2d
    for centre in [(5, 46), (30, 6)]:
        x = blob_input(shape, centre) + 0.05 * torch.randn((1, 1) + shape)
        assert net(x).argmax(1).item() == 1
        m = explain(net, x, method)            # target None = predicted class
        assert near(peak(m[0]), centre, 4), (method, centre, peak(m[0]))


def test_trained_random_init_net_localises_3d(trained3d: BlobNet) -> None:
    shape, net = SHAPE_3D, trained3d
    centre = (7, 3, 21)
    x = blob_input(shape, centre, radius=2.0)
    for method in METHODS:
        m = explain(net, x, method, target=1)
        assert near(peak(m[0]), centre, 3), (method, peak(m[0]))


def test_batch_maps_are_per_item_and_targets_per_item() -> None:
    net = BlobNet(2).eval()
    shape = (30, 44)
    x = torch.cat([blob_input(shape, (4, 4)), blob_input(shape, (25, 40))])
    m = explain(net, x, "gradcam", target=[1, 1])
    assert near(peak(m[0]), (4, 4), 3) and near(peak(m[1]), (25, 40), 3)
    with pytest.raises(ExplainError, match="targets"):
        explain(net, x, "gradcam", target=[1, 0, 1])
    with pytest.raises(ExplainError, match="out of range"):
        explain(net, x, "gradcam", target=5)


# ------------------------------------------------------------------------------------------ CAM identities
def test_cam_spatial_mean_equals_logit_for_gap_linear_head() -> None:
    model = create_model("lightsqueeze_proposed").eval()
    x = torch.randn(2, 1, 227, 227)
    maps, logits = explain(model, x, "cam", target=None, upsample=False, return_logits=True)
    assert maps.shape == (2, 56, 56)
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), logits.max(1), rtol=1e-4, atol=1e-5)
    maps0 = explain(model, x, "cam", target=0, upsample=False)
    np.testing.assert_allclose(maps0.mean(axis=(1, 2)), logits[:, 0], rtol=1e-4, atol=1e-5)


def test_cam_of_conv10_head_is_the_class_channel_before_gap() -> None:
    model = create_model("lightsqueeze_plain").eval()
    x = torch.randn(1, 1, 227, 227)
    maps = explain(model, x, "cam", target=1, upsample=False)
    with torch.no_grad():
        conv10 = model.head.conv10(model.features(x))[:, 1]
    np.testing.assert_allclose(maps, conv10.numpy(), rtol=1e-4, atol=1e-5)


def test_gradcam_matches_manual_computation() -> None:
    model = create_model("lightsqueeze_plain").eval()
    x = torch.randn(1, 1, 227, 227)
    feats = model.features(x).detach().requires_grad_(True)
    score = model.head(feats)[0, 1]
    (g,) = torch.autograd.grad(score, feats)
    manual = F.relu((g.mean((2, 3), keepdim=True) * feats).sum(1)).detach().numpy()
    ours = explain(model, x, "gradcam", target=1, upsample=False)
    np.testing.assert_allclose(ours, manual, rtol=1e-4, atol=1e-6)


def test_explain_restores_train_mode_and_leaves_no_hooks() -> None:
    model = create_model("lightsqueeze_bypass").train()
    explain(model, torch.randn(1, 1, 99, 131), "gradcampp")
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_cam_refuses_head_that_is_not_gap_linear() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    x = torch.randn(1, 1, 16, 16)
    with pytest.raises(ExplainError, match="gradcam"):
        explain(net, x, "cam", layer="1", classifier="3")
    assert explain(net, x, "gradcam", layer="1").shape == (1, 16, 16)


def test_bad_inputs_raise_clear_errors() -> None:
    net = BlobNet(2)
    with pytest.raises(ExplainError, match="N×C×H×W"):
        explain(net, torch.zeros(20, 20), "gradcam")
    with pytest.raises(ExplainError, match="unknown method"):
        explain(net, torch.zeros(1, 1, 20, 20), "saliency")
    with pytest.raises(ExplainError, match="no layer"):
        explain(net, torch.zeros(1, 1, 20, 20), "gradcam", layer="nope")


# ----------------------------------------------------------------------------------------- look inside
def test_list_layers_activation_maps_and_default_layer() -> None:
    model = create_model("lightsqueeze_proposed")
    layers = list_layers(model, torch.zeros(1, 1, 227, 227))
    names = [l.name for l in layers]
    assert names.index("features.conv1") < names.index("features.fire2") < names.index("fuse")
    fire2 = next(l for l in layers if l.name == "features.fire2")
    assert fire2.shape == (1, 128, 56, 56)
    acts = activation_maps(model, torch.randn(2, 1, 227, 200), "features.fire2", channels=[0, 5, 7])
    assert acts.shape == (2, 3, 56, 49)
    up = activation_maps(model, torch.randn(1, 1, 227, 200), "features.fire2", upsample=True)
    assert up.shape == (1, 128, 227, 200)
    assert tile_maps(acts[0]).shape == (2 * 56 + 1, 2 * 49 + 1)
    assert default_layer(BlobNet(2), torch.zeros(1, 1, 20, 30)) == "block_act"


def test_normalise_map() -> None:
    m = np.array([[1.0, 3.0], [2.0, 5.0]], dtype=np.float32)
    n = normalise_map(m)
    assert n.min() == 0.0 and n.max() == 1.0 and m.max() == 5.0   # original untouched
    assert not normalise_map(np.ones((3, 3))).any()
    batch = np.stack([m, 10 * m])
    per = normalise_map(batch, per_item=True)
    np.testing.assert_allclose(per[0], per[1])


# ---------------------------------------------------------------------------------- optional cross-check
def test_gradcam_agrees_with_monai() -> None:
    visualize = pytest.importorskip("monai.visualize")
    model = create_model("lightsqueeze_plain").eval()
    x = torch.randn(1, 1, 227, 195)
    ours = explain(model, x, "gradcam", target=1, layer="features.fire9")
    theirs = visualize.GradCAM(nn_module=model, target_layers="features.fire9")(x, class_idx=1)
    theirs = theirs.detach().numpy()[0, 0]
    # MONAI's default normaliser maps (min, max) to (1, 0): undo that before comparing.
    a, b = normalise_map(ours[0]), 1.0 - normalise_map(theirs)
    assert a.shape == b.shape
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_gradcampp_agrees_with_monai(trained3d: BlobNet) -> None:
    visualize = pytest.importorskip("monai.visualize")
    net = trained3d
    x = blob_input((10, 18, 26), (7, 3, 21), radius=2.0)
    ours = explain(net, x, "gradcampp", target=1, layer="block_act")
    theirs = visualize.GradCAMpp(nn_module=net, target_layers="block_act")(x, class_idx=1).detach().numpy()
    assert np.corrcoef(normalise_map(ours[0]).ravel(), (1.0 - normalise_map(theirs[0, 0])).ravel())[0, 1] > 0.99


def test_heatmap_peak_breaks_plateau_ties_at_the_centre():
    """An up-sampled coarse map is flat over whole cells; the peak is the plateau's centre, not its first pixel
    (a plain argmax returns the corner), inside the region, with ties measured in mm."""
    from engine.xai import heatmap_peak

    heat = np.zeros((64, 64))
    heat[0:16, 0:16] = 1.0                      # hottest cell touches the image corner
    assert np.unravel_index(int(np.argmax(heat)), heat.shape) == (0, 0)
    assert heatmap_peak(heat) in {(7, 7), (7, 8), (8, 7), (8, 8)}
    region = np.zeros_like(heat, dtype=bool)
    region[10:, 10:] = True                     # the organ: only the plateau's corner (10..15)² lies inside
    y, x = heatmap_peak(heat, region)
    assert region[y, x] and heat[y, x] == 1.0 and (y, x) in {(12, 12), (12, 13), (13, 12), (13, 13)}
    # 3-D with anisotropic spacing: a plateau 2 slices × 10 × 10 px, centre in mm decides
    vol = np.zeros((6, 20, 20))
    vol[2:4, 0:10, 0:10] = 5.0
    z, y, x = heatmap_peak(vol, spacing=(5.0, 0.7, 0.7))
    assert z in (2, 3) and y in (4, 5) and x in (4, 5)
    # a unique maximum is returned as is
    vol[5, 19, 19] = 6.0
    assert heatmap_peak(vol) == (5, 19, 19)


def test_2d_pointing_game_hits_a_lesion_under_a_corner_plateau():
    """The 2-D localisation metric scored a coarse map whose hottest cell covers the lesion as a miss when that
    cell touched the image edge (argmax = the corner pixel); it is a hit now, and a map hot elsewhere misses."""
    from engine.train.localize import score_map

    mask = np.zeros((64, 64), dtype=bool)
    mask[5:11, 5:11] = True
    heat = np.zeros((64, 64))
    heat[0:16, 0:16] = 1.0
    assert score_map(heat, mask)["hit"] is True
    far = np.zeros((64, 64))
    far[48:, 48:] = 1.0
    assert score_map(far, mask)["hit"] is False
