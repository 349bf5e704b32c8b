"""3-D CAM geometry: the lesion mask the CAM is trained on, the CAM the viewer shows and the voxels it is scored
on must all be one frame.  One phantom (non-cubic grid, anisotropic voxels, non-cubic model input) with a single
big lesion at a known off-centre place (lower, lateral, in the low-x lung)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

SHAPE = (46, 88, 104)           # (z, y, x) voxels: nothing cubic
SPACING = (4.0, 3.4, 2.9)       # mm, anisotropic in all three axes
INPUT = (16, 40, 48)            # model input (D, H, W), H != W on a square crop box


@pytest.fixture(scope="module")
def case():
    from engine.phantom import LesionSpec, make_phantom

    healthy = make_phantom(SHAPE, SPACING, seed=11, lesions=0, fit_fov=True)
    lung = healthy.lung_mask.astype(bool)
    zi, yi, xi = np.nonzero(lung)
    z = int(zi.min() + 0.3 * (zi.max() - zi.min()))                   # lower third of the lung
    cols = np.nonzero(lung[z].any(0))[0]
    x = int(cols.min() + 0.12 * (cols.max() - cols.min()))             # lateral part of the low-x lung
    rows = np.nonzero(lung[z, :, x])[0]
    y = int(rows[len(rows) // 2])
    spec = LesionSpec(center=(z, y, x), radii_mm=(22.0, 22.0, 22.0), kind="consolidation", hu=10.0)
    ph = make_phantom(SHAPE, SPACING, seed=11, lesions=[spec], fit_fov=True)
    lesion = ph.lesion_mask.astype(bool)
    assert lesion[z, y, x] and lesion.sum() > 200
    return ph.volume, lesion, lung, (z, y, x)


@pytest.fixture(scope="module")
def pre():
    from engine.train.cli_phantom3d import build_preprocess

    return build_preprocess("covidnet3d_s", INPUT, 8.0)


def _model_coords(geom, zyx):
    """Analytic forward map of a source voxel centre to model-grid coordinates (z via the resampled stack and the
    sampled slice list; y, x via box -> resize -> centre crop, align_corners=False geometry)."""
    z, y, x = zyx
    r = (z + 0.5) * geom.resampled_depth / geom.source_shape[0] - 0.5
    idx = np.asarray(geom.slice_indices, dtype=float)
    d = float(np.interp(r, idx, np.arange(len(idx))))
    y0, y1, x0, x1 = geom.crop_box
    h = (y + 0.5 - y0) * geom.resized_hw[0] / (y1 - y0) - 0.5 - geom.crop_offset[0]
    w = (x + 0.5 - x0) * geom.resized_hw[1] / (x1 - x0) - 0.5 - geom.crop_offset[1]
    return np.array([d, h, w])


def test_lesion_mask_lands_on_the_image_lesion_and_maps_back(case, pre):
    from engine.preprocess import Preprocess
    from engine.preprocess.volume3d import volume_tensor
    from engine.train.cli_phantom3d import mask_on_model_grid

    volume, lesion, lung, _ = case
    x, geom = volume_tensor(pre, volume)
    assert tuple(x.shape[2:]) == INPUT
    m = mask_on_model_grid(pre, lesion, volume.spacing, geom)
    assert tuple(m.shape) == INPUT and m.max() > 0.99
    # the training-time mask sits on the lesion *in the image* (consolidation ~0 HU vs lung ~-850 HU)
    img = x[0, 0]
    assert float(img[m > 0.5].mean()) > float(img[m < 0.01].mean()) + 1.0
    # its centre of mass is where the analytic forward geometry puts the lesion's centre of mass (< 1 voxel)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in INPUT], indexing="ij")).reshape(3, -1)
    mm = m.numpy().reshape(-1)
    com_model = (grid * mm).sum(1) / mm.sum()
    com_src = np.array(np.nonzero(lesion)).mean(1)
    assert np.abs(com_model - _model_coords(geom, com_src)).max() < 1.0, (com_model, _model_coords(geom, com_src))
    # and back on the source voxels it covers the lesion again (IoU; the rest is resampling blur)
    back = Preprocess.to_voxels(m, geom) > 0.5
    iou = (back & lesion).sum() / (back | lesion).sum()
    assert iou > 0.75, iou


@pytest.mark.parametrize("grid", [(4, 4, 4), (8, 8, 8)])
def test_perfect_coarse_cam_points_at_the_lesion(case, pre, grid):
    """A CAM equal to the training target (lesion share per cell) on the shipped 4×4×4 grid and on 8×8×8,
    up-sampled as ``explain`` does and mapped to voxels as the viewer does, must score as a hit.  Before the fix
    the argmax broke the edge-cell plateau's tie at the crop box corner (outside the lung): pointing game 0."""
    import torch.nn.functional as F

    from engine.preprocess import Preprocess
    from engine.preprocess.volume3d import volume_tensor
    from engine.train.cli_phantom3d import cam_targets, mask_on_model_grid
    from engine.train.train3d import localisation_scores
    from engine.xai import normalise_map, upsample_map

    volume, lesion, lung, _ = case
    x, geom = volume_tensor(pre, volume)
    m = mask_on_model_grid(pre, lesion, volume.spacing, geom)
    share = F.adaptive_avg_pool3d(m[None, None].float(), grid)[0]          # 1×d×h×w
    target = cam_targets(m[None], grid)[0]
    hot = np.unravel_index(int(share.argmax()), grid)
    assert target[hot] == 1.0 and 0 < target.sum() < target.numel() / 4
    cam = upsample_map(share, INPUT)
    heat = Preprocess.to_voxels(normalise_map(cam)[0], geom)
    assert heat.shape == lesion.shape
    s = localisation_scores(heat, lesion, volume.spacing, lung)
    # 4×4×4 cells are ~10 cm wide: the peak is a cell centre, near (< 15 mm) but not always inside the lesion
    assert s["pointing_hit_tol"] and s["peak_distance_mm"] < 15.0, s
    if grid == (8, 8, 8):
        assert s["pointing_hit"], s
    peak = tuple(s["peak_voxel"])
    assert (lung | lesion)[peak]
    assert s["energy_in_mask"] > 3 * s["energy_chance"], s
    assert s["lesion_auc"] > 0.9, s


def test_peak_is_searched_inside_the_lung():
    """A plain argmax put the peak of a plateau at its first voxel in memory order: here x = 0, outside the lung."""
    from engine.train.train3d import localisation_scores

    shape, spacing = (6, 20, 20), (5.0, 2.0, 2.0)
    lesion = np.zeros(shape, bool)
    lesion[2:4, 8:12, 3:6] = True
    lung = np.zeros(shape, bool)
    lung[1:5, 4:16, 3:16] = True
    heat = np.zeros(shape, np.float32)
    heat[:, 6:14, 0:6] = 1.0            # a plateau reaching out of the lung to the field-of-view edge (x = 0)
    heat[:, 6:14, 6:9] = 0.5
    s = localisation_scores(heat, lesion, spacing, lung)
    peak = tuple(s["peak_voxel"])
    assert lung[peak] and 3 <= peak[2] <= 5      # inside the lung, at the centre of the plateau's lung part
    assert s["pointing_hit"]
    with pytest.raises(ValueError, match="lung mask"):
        localisation_scores(heat, lesion, spacing, lung[:-1])


def test_aux_loss_trains_the_map_explain_shows():
    """The auxiliary lesion loss must act on the map the viewer shows: the COVID CAM of ``engine.xai.explain``."""
    from engine.models import create_model
    from engine.train.cli_phantom3d import aux_logits, class_maps
    from engine.xai import explain, upsample_map

    torch.manual_seed(0)
    model = create_model("covidnet3d_s", num_classes=2, in_chans=1, genotype=["skip"] * 21,
                         macro={"strides": [2, [1, 2, 2], 1, 1, 1, 1]}).eval()
    x = torch.randn(2, 1, 8, 32, 32)
    with torch.no_grad():
        _, maps = class_maps(model, x)
        trained = aux_logits(maps, "cam")
    shown = explain(model, x, "cam", target=1, upsample=False)
    assert trained.shape == shown.shape == (2, 2, 4, 4)
    np.testing.assert_allclose(trained.numpy(), shown, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(upsample_map(trained, (8, 32, 32)).numpy(), explain(model, x, "cam", target=1),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        aux_logits(maps, "other")


def test_cli_phantom3d_light_genotype_end_to_end(tmp_path):
    """The training CLI with the shipped recipe's options (light genotype, 8×8×8-style strides, aux loss on the
    COVID CAM) on a tiny set: it trains, localises on the source voxels and ships weights that load again."""
    import json

    from engine.train.cli_phantom3d import LIGHT_GENOTYPE, main
    from engine.weights import load_weights

    dest = tmp_path / "ship"
    rc = main(["--out", str(tmp_path / "run"), "--n-train", "8", "--n-val", "3", "--n-test", "5",
               "--input-size", "8,32,32", "--epochs", "1", "--batch-size", "4", "--genotype", "light",
               "--strides", "2,1x2x2,1,1,1,1", "--aux-weight", "1.0", "--threads", "1", "--ship", str(dest)])
    assert rc == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    loc = summary["localisation"]
    assert loc["n"] >= 1 and 0.0 <= loc["pointing_game"] <= 1.0 and 0.0 < loc["energy_chance"] < 1.0
    loaded = load_weights(dest)
    assert loaded.manifest["create_kwargs"]["genotype"] == LIGHT_GENOTYPE
    assert "--aux-map cam" in loaded.manifest["data"]["reproduce"]
    assert "COVID CAM" in loaded.manifest["notes"]
    assert "hand-picked LIGHT_GENOTYPE" in loaded.manifest["notes"]


def test_genotype_origin_names_the_search_that_made_a_genotype(tmp_path):
    """The model card says whether a genotype was hand-picked or searched, quoting the search file's record."""
    import json

    from engine.train.cli_phantom3d import genotype_origin

    f = tmp_path / "g.json"
    f.write_text(json.dumps({"genotype": ["skip"] * 21, "source": "argmax_alpha",
                             "search": {"command": "lunglens-engine search --phantom3d 480"}}))
    assert genotype_origin(str(f)) == "from g.json: argmax_alpha; search: lunglens-engine search --phantom3d 480"
    assert genotype_origin("light") == "hand-picked LIGHT_GENOTYPE"
    assert genotype_origin(None) == "the spec's representative genotype"


@pytest.mark.parametrize("argv, message", [
    (["--n-train", "4", "--batch-size", "8"], "--n-train 4 is smaller than --batch-size 8"),
    (["--n-val", "0"], "--n-val and --n-test need at least one case"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_cli_phantom3d_refuses_sets_that_cannot_train(tmp_path, capsys, argv, message):
    """Too few cases for one batch used to end in a one-cycle scheduler error after the data were built; the
    CLI now says what is wrong before it generates anything."""
    from engine.train.cli_phantom3d import main

    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "run")] + argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
