"""The 3-D path of Preprocess: slice sampling (P4), z-resampling, centred crop, flips, and the exact inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.io import Volume
from engine.preprocess import Preprocess
from engine.preprocess.volume3d import (
    VolumeGeometry,
    linear_weights,
    random_indices,
    symmetrical_indices,
    volume_to_voxels,
)


def pre3d(size=(16, 32, 40), **kw) -> Preprocess:
    base = dict(spatial_dims=3, input_size=size, hu_window=(-500.0, 1000.0), mean=(0.0,), std=(1.0,),
                target_spacing=(5.0, 0.0, 0.0))
    base.update(kw)
    return Preprocess(**base)


# ----------------------------------------------------------------------------------------------- sampling
def test_symmetrical_sampling_docstring_examples() -> None:
    assert symmetrical_indices(7, 15) == [0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 6]
    assert symmetrical_indices(7, 10) == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6]
    assert symmetrical_indices(7, 3) == [1, 3, 5]
    assert symmetrical_indices(8, 8) == list(range(8))
    # even n starts at n//2 - 1: n=10, D=3 -> middle 4, interval 3 -> 4, 7, 1
    assert symmetrical_indices(10, 3) == [1, 4, 7]


@pytest.mark.parametrize("n", [1, 2, 5, 16, 31, 64, 97])
@pytest.mark.parametrize("depth", [1, 3, 16, 32, 40])
def test_sampling_keeps_order_range_and_length(n: int, depth: int) -> None:
    sym = symmetrical_indices(n, depth)
    assert len(sym) == depth and sym == sorted(sym) and 0 <= sym[0] and sym[-1] < n
    if depth <= n:
        assert len(set(sym)) == depth              # downsampling never repeats a slice
    else:
        assert set(sym) == set(range(n))          # upsampling keeps every slice
    rng = np.random.default_rng(n * 100 + depth)
    rnd = random_indices(n, depth, rng)
    assert len(rnd) == depth and rnd == sorted(rnd) and 0 <= rnd[0] and rnd[-1] < n
    if depth <= n:
        assert len(set(rnd)) == depth
    else:
        assert set(rnd) == set(range(n))


def test_random_sampling_is_random_but_reproducible() -> None:
    a = random_indices(60, 16, np.random.default_rng(1))
    b = random_indices(60, 16, np.random.default_rng(1))
    c = random_indices(60, 16, np.random.default_rng(2))
    assert a == b and a != c


def test_linear_weights_match_interpolate_when_upsampling() -> None:
    x = torch.randn(9)
    w = torch.from_numpy(linear_weights(9, 20, antialias=False))
    ref = torch.nn.functional.interpolate(x[None, None], size=20, mode="linear", align_corners=False)[0, 0]
    assert torch.allclose(w @ x, ref, atol=1e-5)


# ----------------------------------------------------------------------------------------------- forward
def _ramp_volume(spacing_z: float, extent_mm: float = 240.0, hw=(48, 56)) -> Volume:
    """HU depends only on the physical z position (a smooth ramp), so thin and thick scans of the same
    'patient' must give the same network input once resampled."""
    n = int(round(extent_mm / spacing_z))
    z_mm = (np.arange(n) + 0.5) * spacing_z
    hu = -1000.0 + 900.0 * (0.5 - 0.5 * np.cos(2 * np.pi * z_mm / extent_mm))
    arr = np.broadcast_to(hu[:, None, None], (n, *hw)).astype(np.float32).copy()
    return Volume(array=arr, spacing=(spacing_z, 0.7, 0.7))


def test_slice_thickness_does_not_leak_after_resampling() -> None:
    pre = pre3d(size=(16, 16, 16))
    thin, _ = pre.volume(_ramp_volume(1.25))
    thick, _ = pre.volume(_ramp_volume(5.0))
    assert thin.shape == thick.shape == (1, 1, 16, 16, 16)
    assert torch.allclose(thin, thick, atol=0.02)


def _noise_volume(spacing_z: float, seed: int, extent_mm: float = 240.0) -> Volume:
    """Thin slices carry more independent noise than thick ones (a thick slice averages the thin ones):
    the 'sharpness along z' a 3-D CNN could learn as a shortcut when classes differ in thickness."""
    n = int(round(extent_mm / 1.25))
    rng = np.random.default_rng(seed)
    thin = -600.0 + 100.0 * rng.standard_normal((n, 24, 24)).astype(np.float32)
    k = int(round(spacing_z / 1.25))
    arr = thin.reshape(n // k, k, 24, 24).mean(1)
    return Volume(array=arr, spacing=(spacing_z, 1.0, 1.0))


def test_resampling_equalises_noise_texture_of_thin_and_thick_scans() -> None:
    def z_texture(pre: Preprocess, vol: Volume) -> float:
        x = pre.volume(vol)[0][0, 0]
        return float(x.std())

    pre = pre3d(size=(16, 24, 24), extra={"crop_scale": 1.0})
    raw = pre3d(size=(16, 24, 24), target_spacing=None, extra={"crop_scale": 1.0})
    ratio_raw = z_texture(raw, _noise_volume(1.25, 0)) / z_texture(raw, _noise_volume(5.0, 1))
    ratio = z_texture(pre, _noise_volume(1.25, 0)) / z_texture(pre, _noise_volume(5.0, 1))
    assert ratio_raw > 1.8            # 2x noise on the thin scan without resampling
    assert 0.7 < ratio < 1.2          # comparable once both are at 5 mm


def test_centre_crop_is_centred_and_shapes_are_dhw() -> None:
    z, h, w = 20, 60, 80
    arr = np.full((z, h, w), -1000.0, np.float32)
    arr[:, h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5] = 0.0    # a bright bar through the exact centre
    pre = pre3d(size=(8, 24, 30), extra={"crop_scale": 1.25})
    x, geom = pre.volume(Volume(array=arr, spacing=(5.0, 1.0, 1.0)))
    assert x.shape == (1, 1, 8, 24, 30)
    img = x[0, 0, 4].numpy()
    assert np.allclose(img, img[::-1, :], atol=1e-5) and np.allclose(img, img[:, ::-1], atol=1e-5)
    assert geom.resized_hw == (30, 38) and geom.crop_offset == (3, 4)


def test_window_normalise_and_channels() -> None:
    arr = np.full((10, 16, 16), -1000.0, np.float32)
    pre = pre3d(size=(4, 8, 8), hu_window=(-600.0, 1500.0), mean=(0.5,), std=(0.25,), in_chans=3)
    x, _ = pre.volume(arr, spacing=(5.0, 1.0, 1.0), is_hu=True)
    lo = -600 - 750
    expected = ((-1000 - lo) / 1500 - 0.5) / 0.25
    assert x.shape == (1, 3, 4, 8, 8)
    assert torch.allclose(x, torch.full_like(x, expected), atol=1e-5)


def test_eight_bit_stacks_are_not_resampled() -> None:
    arr = np.tile(np.arange(12, dtype=np.uint8)[:, None, None] * 20, (1, 8, 8))
    x, geom = pre3d(size=(12, 8, 8), mean=(0.0,), std=(1.0,), extra={"crop_scale": 1.0}).volume(
        Volume(array=arr, spacing=(1.0, 1.0, 1.0), is_hu=False))
    assert geom.resampled_depth == 12
    assert torch.allclose(x[0, 0, :, 0, 0], torch.arange(12) * 20 / 255.0, atol=1e-6)


def test_errors_are_specific() -> None:
    pre = pre3d()
    with pytest.raises(ValueError, match="needs a \\(z, y, x\\) volume"):
        pre.volume(np.zeros((4, 4)), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        pre.volume(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="rng"):
        pre.volume(np.zeros((4, 4, 4)), spacing=(1, 1, 1), train=True)
    with pytest.raises(ValueError, match="3D path"):
        from engine.preprocess.volume3d import volume_tensor
        volume_tensor(Preprocess(spatial_dims=2), np.zeros((4, 4, 4)), (1, 1, 1))


# ----------------------------------------------------------------------------------------------- inverse
def _blob_volume(shape=(37, 50, 70), centre=(12.0, 31.0, 20.0), spacing=(2.5, 0.9, 0.9)) -> Volume:
    zz, yy, xx = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    cz, cy, cx = centre
    d2 = ((zz - cz) * spacing[0]) ** 2 + ((yy - cy) * spacing[1]) ** 2 + ((xx - cx) * spacing[2]) ** 2
    hu = -1000.0 + 1000.0 * np.exp(-d2 / (2 * 9.0 ** 2))
    return Volume(array=hu.astype(np.float32), spacing=spacing)


@pytest.mark.parametrize("train", [False, True])
def test_inverse_puts_model_grid_maps_back_on_the_voxels(train: bool) -> None:
    """The network input itself, used as a 'heatmap', must land back on the source blob (non-cubic,
    non-square volume; flips undone; slices between sampled ones interpolated)."""
    vol = _blob_volume()
    pre = pre3d(size=(12, 24, 20), hu_window=(-500.0, 1000.0))
    rng = np.random.default_rng(3)
    for _ in range(4 if train else 1):
        x, geom = pre.volume(vol, train=train, rng=rng)
        back = Preprocess.to_voxels(x[0, 0], geom)
        assert back.shape == vol.shape
        peak = np.unravel_index(np.argmax(back), back.shape)
        assert np.abs(np.array(peak) - np.array([12, 31, 20])).max() <= 2, (peak, geom.flips)
        ref = pre.to_unit(vol.array, True).numpy()
        (y0, y1, x0, x1) = geom.crop_box
        oy, ox = geom.crop_offset
        ry = (y1 - y0) / geom.resized_hw[0]
        rx = (x1 - x0) / geom.resized_hw[1]
        fy = slice(int(np.ceil(y0 + oy * ry)) + 1, int(y0 + (oy + 24) * ry) - 1)
        fx = slice(int(np.ceil(x0 + ox * rx)) + 1, int(x0 + (ox + 20) * rx) - 1)
        # z range between the first and last sampled slice (outside it the map is held constant)
        zr = geom.source_shape[0] / geom.resampled_depth
        fz = slice(int(np.ceil((geom.slice_indices[0] + 0.5) * zr - 0.5)),
                   int((geom.slice_indices[-1] + 0.5) * zr - 0.5) + 1)
        corr = np.corrcoef(back[fz, fy, fx].ravel(), ref[fz, fy, fx].ravel())[0, 1]
        assert corr > 0.97
        # outside the centre crop the model saw nothing: zeros
        assert np.all(back[:, :, : int(x0 + ox * rx) - 1] == 0)


def test_inverse_of_one_hot_slice_stays_on_its_slice_region() -> None:
    geom = VolumeGeometry(source_shape=(40, 10, 10), source_spacing=(1.25, 1, 1), resampled_depth=10,
                          slice_indices=tuple(symmetrical_indices(10, 5)), crop_box=(0, 10, 0, 10),
                          resized_hw=(10, 10), crop_offset=(0, 0), input_size=(5, 10, 10))
    m = np.zeros((5, 10, 10), np.float32)
    m[2] = 1.0                                       # model slice 2 = resampled slice idx[2]
    back = volume_to_voxels(m, geom)
    prof = back[:, 5, 5]
    r = geom.slice_indices[2]
    centre = int(np.argmax(prof))
    assert abs((centre + 0.5) * 10 / 40 - 0.5 - r) <= 0.5
    assert np.isclose(prof.max(), 1.0, atol=0.13) and prof.min() == 0.0


def test_lung_crop_box_contains_the_lungs() -> None:
    from engine.phantom import make_phantom

    ph = make_phantom((24, 80, 96), (10.0, 5.0, 5.0), seed=1, lesions=1, fit_fov=False)
    pre = pre3d(size=(8, 32, 32), lung_crop=True, extra={"crop_scale": 1.0})
    x, geom = pre.volume(ph.volume)
    y0, y1, x0, x1 = geom.crop_box
    assert y1 - y0 == x1 - x0                         # squared box
    zz, yy, xx = np.nonzero(ph.lung_mask)
    assert y0 <= yy.min() and yy.max() < y1 and x0 <= xx.min() and xx.max() < x1
    assert x.shape == (1, 1, 8, 32, 32)
