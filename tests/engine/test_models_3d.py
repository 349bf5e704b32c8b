"""P4 3-D networks: CovidNet3D built from genotypes (op library, sizes, genotype files) and the 3-D baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.models import create_model, model_config
from engine.models.covidnet3d import GenotypeError, load_genotype, representative_genotype
from engine.models.ops3d import CODE_OPS, PAPER_OPS, MacroSpace, SearchBlock


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # small 3-D convs: one thread beats two on a shared 2-core machine
    yield
    torch.set_num_threads(before)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("ops", "expected"), [
    (["skip"] * 21, 676_515),
    (["3x3x3_MBConv3"] * 21, 2_797_219),
    (["3x3x3_MBConv6"] * 21, 4_913_827),
    (["7x7x7_MBConv4"] * 21, 6_091_427),
    (None, 2_677_955),  # representative genotype (spec §5.2)
])
def test_covidnet3d_s_sizes_match_spec(ops, expected) -> None:
    assert n_params(create_model("covidnet3d_s", num_classes=3, genotype=ops)) == expected


def test_covidnet3d_s_max_params_genotype_is_the_upper_bound() -> None:
    # Per block the largest op is 7x7x7_MBConv4 except where 3x3x3_MBConv6 wins; the spec's bound is 6,116,387.
    layout = MacroSpace.named("covidnet3d_s").block_layout()
    best = []
    for c_in, c_out, stride, _ in layout:
        sizes = {op: n_params(SearchBlock(c_in, c_out, stride, op)) for op in PAPER_OPS}
        best.append(max(sizes, key=sizes.get))
    assert n_params(create_model("covidnet3d_s", num_classes=3, genotype=best)) == 6_116_387


def test_covidnet3d_l_sizes_match_spec() -> None:
    assert n_params(create_model("covidnet3d_l", num_classes=3, genotype=["skip"] * 21)) == 3_070_947
    assert n_params(create_model("covidnet3d_l", num_classes=3)) == 17_048_483


def test_registry_entries_for_3d_models() -> None:
    for name in ("covidnet3d_s", "covidnet3d_l", "mc3_18", "resnet3d_101", "densenet3d_121"):
        cfg = model_config(name)
        assert cfg.spatial_dims == 3 and cfg.cam_kind == "cam"
        assert cfg.input_size == (32, 128, 128)
    assert model_config("resnet3d_101").giant


@pytest.mark.parametrize("shape", [(16, 64, 64), (12, 40, 72)])
def test_covidnet3d_forward_backward_non_cubic(shape) -> None:
    model = create_model("covidnet3d_s", num_classes=3)
    x = torch.randn(2, 1, *shape, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # Feature-map table of spec §5.1: 1×16×64×64 → 1×2×2 at the CAM layer.
    if shape == (16, 64, 64):
        assert model.forward_features(x[:1]).shape == (1, 1280, 1, 2, 2)


def test_skip_block_returns_calibration_output_and_identity_doubles() -> None:
    x = torch.randn(1, 24, 4, 8, 8)
    skip = SearchBlock(24, 24, 1, "skip")
    assert torch.allclose(skip(x), skip.calib(x))
    ident = SearchBlock(24, 24, 1, "identity")   # public code's Identity under the residual = 2x
    assert torch.allclose(ident(x), 2 * ident.calib(x))
    first = SearchBlock(16, 24, 2, "identity")   # no residual on a stride-2 / width-change block
    y = torch.randn(1, 16, 4, 8, 8)
    assert first(y).shape == (1, 24, 2, 4, 4)
    assert torch.allclose(first(y), first.calib(y))


def test_genotype_forms(tmp_path) -> None:
    ops = [PAPER_OPS[i % 8] for i in range(21)]
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"space": "covidnet3d_s", "genotype": ops, "source": "argmax"}))
    assert load_genotype(path) == ops
    assert load_genotype(str(path)) == ops
    assert load_genotype(json.dumps(ops)) == ops
    assert create_model("covidnet3d_s", genotype=str(path)).genotype == ops
    # The public code's per-epoch architecture file (one-hot masks over its 9/10 candidates).
    keys = [(c, b) for c, n in enumerate(MacroSpace.BLOCKS) for b in range(n)]
    masks = {f"s{c}_c{b}": [i == (4 * c + b) % 10 for i in range(10)] for c, b in keys}
    code_list = CODE_OPS + ("zero",)   # the second "Zero" of stride-1 equal-width blocks
    assert load_genotype(masks) == [code_list[(4 * c + b) % 10] for c, b in keys]
    assert "zero" in load_genotype(masks) and "identity" in load_genotype(masks)
    assert load_genotype(None) == representative_genotype()


def test_genotype_errors_are_specific(tmp_path) -> None:
    with pytest.raises(GenotypeError, match="21 blocks, got 3"):
        load_genotype(["skip"] * 3)
    with pytest.raises(GenotypeError, match="unknown 3-D op 'conv9'"):
        load_genotype(["conv9"] * 21)
    with pytest.raises(GenotypeError, match="not found"):
        load_genotype(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        load_genotype(bad)
    other = tmp_path / "l.json"
    other.write_text(json.dumps({"space": "covidnet3d_l", "genotype": ["skip"] * 21}))
    with pytest.raises(GenotypeError, match="covidnet3d_l"):
        create_model("covidnet3d_s", genotype=other)


@pytest.mark.parametrize(("name", "in3", "in1"), [
    ("mc3_18", 11_491_779, 11_472_963),
    ("densenet3d_121", 11_289_603, 11_245_699),
    ("resnet3d_101", 85_251_267, 85_207_363),
])
def test_baseline_sizes_match_spec(name, in3, in1) -> None:
    assert n_params(create_model(name, num_classes=3, in_chans=3)) == in3
    assert n_params(create_model(name, num_classes=3, in_chans=1)) == in1


@pytest.mark.parametrize("name", ["mc3_18", "densenet3d_121"])
def test_baselines_forward_and_cam_layer_shape(name) -> None:
    model = create_model(name, num_classes=3).eval()
    cfg = model.model_config
    shape = cfg.test_input_size
    feats = {}
    layer = dict(model.named_modules())[cfg.cam_layer]
    layer.register_forward_hook(lambda m, i, o: feats.setdefault("f", o))
    with torch.no_grad():
        out = model(torch.randn(1, 1, *shape))
    assert out.shape == (1, 3)
    classifier = dict(model.named_modules())[cfg.classifier]
    assert feats["f"].shape[1] == classifier.in_features
    assert (feats["f"] >= 0).all()  # post-ReLU map, as CAM assumes


def test_cam_of_covidnet3d_is_on_the_input_grid_in_dhw_order() -> None:
    """explain(..., "cam") must equal Σ_k w_k f_k upsampled trilinearly to D×H×W — checked on a non-cubic input
    with a finer macro grid, so a swapped axis would change the shape or the values."""
    import torch.nn.functional as F

    from engine.xai import explain

    torch.manual_seed(0)
    model = create_model("covidnet3d_s", num_classes=2, genotype=["skip"] * 21,
                         macro={"stem_stride": [1, 2, 2], "strides": [2, 2, 1, 1, 1, 1]}).eval()
    x = torch.randn(1, 1, 12, 40, 56)
    cam = explain(model, x, "cam", target=1)
    assert cam.shape == (1, 12, 40, 56)
    with torch.no_grad():
        f = model.forward_features(x)                       # 1×1280×3×5×7
        manual = torch.einsum("k,kdhw->dhw", model.classifier.weight[1], f[0]) + model.classifier.bias[1]
        up = F.interpolate(manual[None, None], size=(12, 40, 56), mode="trilinear", align_corners=False)[0, 0]
    assert f.shape[2:] == (3, 5, 7)
    assert np.allclose(cam[0], up.numpy(), atol=1e-4)
