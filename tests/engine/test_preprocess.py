"""``engine.preprocess.Preprocess`` (2D): the one preprocessing path and its inverse ``to_voxels``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.preprocess import Preprocess, SliceGeometry, lung_bounding_box, lung_mask


def _chest(h: int = 256, w: int = 256, table: bool = True) -> np.ndarray:
    """HU slice: air outside, soft-tissue body, two lungs, a hollow table below the body, bowel gas bubble."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.full((h, w), -1000.0, np.float32)
    body = ((yy - 0.45 * h) / (0.33 * h)) ** 2 + ((xx - 0.5 * w) / (0.42 * w)) ** 2 < 1
    img[body] = 40.0
    for cx in (0.33, 0.67):
        lung = ((yy - 0.42 * h) / (0.2 * h)) ** 2 + ((xx - cx * w) / (0.11 * w)) ** 2 < 1
        img[lung] = -850.0
    gas = ((yy - 0.68 * h) ** 2 + (xx - 0.5 * w) ** 2) < (0.02 * h) ** 2
    img[gas] = -900.0
    if table:
        img[int(0.86 * h):int(0.92 * h), int(0.1 * w):int(0.9 * w)] = 300.0
        img[int(0.875 * h):int(0.905 * h), int(0.15 * w):int(0.85 * w)] = -1000.0   # hollow inside the table
    return img


# ------------------------------------------------------------------------------------------------ definition
def test_for_model_reads_the_registry_and_roundtrips_through_json() -> None:
    pre = Preprocess.for_model("lightsqueeze_proposed")
    assert pre.input_size == (227, 227) and pre.in_chans == 1 and pre.cam_layer == "fuse"
    custom = Preprocess.for_model("lightsqueeze_proposed", input_size=(131, 131), lung_crop=True, in_chans=3)
    back = Preprocess.from_dict(json.loads(json.dumps(custom.to_dict())))
    assert back == custom
    assert Preprocess.from_dict({**custom.to_dict(), "unknown_future_field": 1}) == custom


def test_window_and_8bit_map_to_the_same_unit_range() -> None:
    pre = Preprocess(hu_window=(-600.0, 1500.0))
    hu = np.array([-1350.0, -600.0, 150.0, 3000.0])
    np.testing.assert_allclose(pre.to_unit(hu, is_hu=True).numpy(), [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(pre.to_unit(np.array([0, 51, 255], np.uint8), is_hu=False).numpy(),
                               [0.0, 0.2, 1.0])


def test_image_is_normalised_unit_image_and_replicates_channels() -> None:
    pre = Preprocess(input_size=(32, 40), in_chans=3, mean=(0.5,), std=(0.25,))
    img = np.random.default_rng(0).integers(0, 256, (50, 70)).astype(np.uint8)
    x, geom = pre.image(img)
    unit, g2 = pre.unit_image(img)
    assert x.shape == (1, 3, 32, 40) and unit.shape == (1, 1, 32, 40) and geom == g2
    np.testing.assert_allclose(x[:, :1].numpy(), ((unit - 0.5) / 0.25).numpy(), rtol=1e-6, atol=1e-6)
    assert torch.equal(x[:, 0], x[:, 2])
    assert geom == SliceGeometry(source_shape=(50, 70), crop_box=(0, 50, 0, 70), input_size=(32, 40))


def test_bad_inputs_raise_clear_errors() -> None:
    pre = Preprocess(input_size=(16, 16))
    with pytest.raises(ValueError, match="single grey image"):
        pre.image(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="empty"):
        pre.slices(np.zeros((0, 8, 8)), is_hu=True)
    with pytest.raises(ValueError, match="does not fit"):
        pre.slices(np.zeros((1, 8, 8)), is_hu=True, box=(0, 9, 0, 8))
    with pytest.raises(ValueError, match="2D path"):
        Preprocess(spatial_dims=3, input_size=(8, 16, 16)).slices(np.zeros((1, 8, 8)), is_hu=True)


# ------------------------------------------------------------------------------------------------ inverse
def test_to_voxels_inverts_crop_and_resize() -> None:
    """A heatmap that is the network input itself goes back onto the source pixels it came from."""
    src = np.zeros((120, 160), np.float32)
    src[30:90, 40:120] = np.linspace(0, 255, 80)[None, :]          # a ramp inside the crop box
    pre = Preprocess(input_size=(64, 64))
    box = (20, 100, 30, 130)
    unit, geom = pre.unit_slices(src[None], is_hu=False, box=box)
    back = Preprocess.to_voxels(unit[:, 0] * 255.0, geom)
    assert back.shape == (1, 120, 160)
    assert np.all(back[0, :20] == 0) and np.all(back[0, :, 130:] == 0)   # zeros outside the crop box
    inner = (slice(35, 85), slice(45, 115))                              # away from the ramp's borders
    assert np.abs(back[0][inner] - src[inner]).mean() < 2.0


def test_to_voxels_puts_a_hotspot_back_where_it_was() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        h, w = int(rng.integers(60, 300)), int(rng.integers(60, 300))
        y, x = int(rng.integers(5, h - 5)), int(rng.integers(5, w - 5))
        src = np.zeros((h, w), np.float32)
        src[max(0, y - 3):y + 4, max(0, x - 3):x + 4] = 255
        pre = Preprocess(input_size=(48, 48))
        unit, geom = pre.unit_image(src)
        # the "heatmap" lives on a coarser grid than the input (as a CAM does)
        heat = torch.nn.functional.avg_pool2d(unit, 4)[0, 0]
        back = Preprocess.to_voxels(heat, geom)
        by, bx = np.unravel_index(np.argmax(back), back.shape)
        assert abs(by - y) <= max(3, h / 12) and abs(bx - x) <= max(3, w / 12)


def test_to_voxels_batch_and_single() -> None:
    geom = SliceGeometry(source_shape=(10, 12), crop_box=(2, 8, 3, 9), input_size=(4, 4))
    one = Preprocess.to_voxels(np.ones((3, 3)), geom)
    many = Preprocess.to_voxels(np.ones((2, 3, 3)), geom)
    assert one.shape == (10, 12) and many.shape == (2, 10, 12)
    assert one[2:8, 3:9].min() == pytest.approx(1.0) and one.sum() == pytest.approx(36.0)


# ------------------------------------------------------------------------------------------------ lung crop
def test_lung_box_covers_the_lungs_and_drops_table_and_air() -> None:
    img = _chest()
    y0, y1, x0, x1 = lung_bounding_box(img[None], margin=0)
    yy, xx = np.nonzero(img == -850.0)
    assert y0 <= yy.min() and y1 >= yy.max() + 1 and x0 <= xx.min() and x1 >= xx.max() + 1
    assert y1 < int(0.8 * 256), "table / bowel gas must not extend the box"
    assert (y1 - y0) * (x1 - x0) < 0.4 * img.size
    mask, f = lung_mask(img[None])
    assert f == 1 and mask.shape == (1, 256, 256)
    inside = mask[0][img == -850.0].mean()
    assert inside > 0.95 and mask[0][img != -850.0].mean() < 0.01


def test_lung_box_margin_fallbacks_and_stack_union() -> None:
    img = _chest(table=False)
    tight = lung_bounding_box(img[None], margin=0)
    loose = lung_bounding_box(img[None], margin=8)
    assert loose == (tight[0] - 8, tight[1] + 8, tight[2] - 8, tight[3] + 8)
    # no lungs -> the body's box; nothing at all -> the whole slice
    soft = np.where(img > -1000, 40.0, -1000.0).astype(np.float32)
    by0, by1, bx0, bx1 = lung_bounding_box(soft[None], margin=0)
    yy, xx = np.nonzero(soft > -400)
    assert (by0, by1, bx0, bx1) == (yy.min(), yy.max() + 1, xx.min(), xx.max() + 1)
    assert lung_bounding_box(np.full((2, 64, 64), -1000.0)) == (0, 64, 0, 64)
    # a stack: the union over slices
    shifted = np.roll(img, 20, axis=1)
    union = lung_bounding_box(np.stack([img, shifted]), margin=0)
    assert union[2] == tight[2] and union[3] >= tight[3] + 19


def test_lung_crop_only_for_hu_and_shared_by_chunks() -> None:
    img = _chest()
    pre = Preprocess(input_size=(64, 64), lung_crop=True)
    _, g_hu = pre.slices(img[None], is_hu=True)
    assert g_hu.crop_box != (0, 256, 0, 256)
    _, g_8 = pre.slices(np.zeros((1, 256, 256), np.uint8), is_hu=False)
    assert g_8.crop_box == (0, 256, 0, 256)
    stack = np.stack([img, np.roll(img, 30, axis=0)])
    box = pre.crop_box(stack, is_hu=True)
    _, g0 = pre.slices(stack, True, indices=[0], box=box)
    _, g1 = pre.slices(stack, True, indices=[1], box=box)
    assert g0 == g1 and g0.crop_box == box


@pytest.mark.data
def test_lung_box_on_real_ct(shared_data) -> None:
    sitk = pytest.importorskip("SimpleITK")
    files = sorted((shared_data / "ct-volumes-3d").rglob("*.nii.gz"))
    if not files:
        pytest.skip("no NIfTI volumes in shared data")
    for f in files[:3]:
        vol = sitk.GetArrayFromImage(sitk.ReadImage(str(f))).astype(np.float32)
        y0, y1, x0, x1 = lung_bounding_box(vol)
        h, w = vol.shape[1:]
        assert (y1 - y0) * (x1 - x0) < 0.85 * h * w, f.name            # it does crop
        mid = vol[len(vol) // 2]
        lungs = lung_mask(mid[None])[0][0]
        ys, xs = np.nonzero(lungs)
        assert ys.size > 0.03 * h * w, f.name                           # lungs found on the middle slice
        assert y0 <= ys.min() and ys.max() < y1 and x0 <= xs.min() and xs.max() < x1


# ------------------------------------------------------------------------------------------------ intensity
def test_equalize_is_invariant_to_window_changes() -> None:
    """With intensity='equalize' a re-windowed copy of an image (monotone grey-level change) gives nearly
    the same network input — paper figures exported with different windows look alike to the model."""
    from engine.preprocess.definition import equalize

    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(120, 40, (96, 96)), 0, 255)
    img[:, :10] = 0                                                     # black border like a CT background
    rewindowed = np.clip((img - 30) * 1.6, 0, 255) ** 1.0
    pre = Preprocess(input_size=(64, 64), intensity="equalize")
    a, _ = pre.unit_image(img.astype(np.uint8))
    b, _ = pre.unit_image(rewindowed.astype(np.uint8))
    plain = Preprocess(input_size=(64, 64))
    pa, _ = plain.unit_image(img.astype(np.uint8))
    pb, _ = plain.unit_image(rewindowed.astype(np.uint8))
    assert float((a - b).abs().mean()) < 0.25 * float((pa - pb).abs().mean())
    e = equalize(torch.rand(3, 1, 16, 16))
    assert float(e.min()) == 0.0 and float(e.max()) == 1.0
    assert float(equalize(torch.full((1, 1, 4, 4), 0.3)).abs().max()) == 0.0     # constant image -> 0
    with pytest.raises(ValueError, match="intensity"):
        Preprocess(input_size=(8, 8), intensity="magic").unit_image(np.zeros((8, 8), np.uint8))
    assert Preprocess.from_dict(pre.to_dict()).intensity == "equalize"


def test_crop_margin_widens_the_lung_box() -> None:
    img = _chest(table=False)
    tight = Preprocess(input_size=(32, 32), lung_crop=True).crop_box(img[None], is_hu=True)
    wide = Preprocess(input_size=(32, 32), lung_crop=True, crop_margin=0.1).crop_box(img[None], is_hu=True)
    h, w = tight[1] - tight[0], tight[3] - tight[2]
    assert wide == (max(0, tight[0] - round(0.1 * h)), min(256, tight[1] + round(0.1 * h)),
                    max(0, tight[2] - round(0.1 * w)), min(256, tight[3] + round(0.1 * w)))
