"""`lunglens-engine search --phantom3d`: DNAS on in-memory engine.train.phantom3d cases with the shipped
covidnet3d_s input set-up (whole lung box, macro strides), and the options it needs."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from engine.search.cli import PAPER_CROP_SCALE, make_preprocess, parse_strides, phantom3d_data


def test_parse_strides() -> None:
    assert parse_strides("2,1x2x2,1,1,1,1") == {"strides": [2, [1, 2, 2], 1, 1, 1, 1]}
    assert parse_strides(None) is None and parse_strides("paper") is None
    with pytest.raises(argparse.ArgumentTypeError):
        parse_strides("2,a,1")


def test_folder_preprocess_keeps_the_paper_crop_unless_asked() -> None:
    ns = argparse.Namespace(lung_crop=True, slice_spacing=5.0, crop_scale=None)
    assert make_preprocess("covidnet3d_s", (8, 32, 32), ns).extra["crop_scale"] == PAPER_CROP_SCALE == 1.25
    ns.crop_scale = 1.0
    assert make_preprocess("covidnet3d_s", (8, 32, 32), ns).extra["crop_scale"] == 1.0


def test_phantom3d_data_slices_a_larger_cached_set(tmp_path) -> None:
    from engine.train.cli_phantom3d import build_preprocess, cached_tensors

    pre = build_preprocess("covidnet3d_s", (8, 32, 32), 8.0)
    x6, y6, m6, _ = cached_tensors(tmp_path, pre, 77, 6, None, log=lambda m: None)
    args = argparse.Namespace(cache=str(tmp_path), phantom3d=4, phantom_seed=77, seed=0)
    data, info = phantom3d_data(args, pre)
    assert len(data) == 4 and info["n"] == 4 and info["set_seed"] == 77
    assert not list(tmp_path.glob("set77_n4_*"))          # sliced from the n=6 cache, nothing regenerated
    x, y = data.batch([0, 1, 2, 3], train=False)
    assert torch.equal(x, x6[:4].float()) and torch.equal(y, y6[:4])
    xa, _ = data.batch([0, 1, 2, 3], train=True)           # flips / shifts, same shape
    assert xa.shape == x.shape and not torch.equal(xa, x)


@pytest.mark.slow
def test_search_cli_phantom3d_exports_genotype_with_macro(tmp_path, capsys) -> None:
    from engine.cli import main as engine_main
    from engine.models import create_model
    from engine.models.covidnet3d import load_genotype

    out = tmp_path / "search"
    ops = ["skip", "3x3x3_MBConv3"]
    rc = engine_main(["search", "--phantom3d", "8", "--phantom-seed", "5", "--input-size", "8,32,32",
                      "--slice-spacing", "8", "--strides", "2,1x2x2,1,1,1,1", "--op-set", ",".join(ops),
                      "--epochs", "1", "--batch-size", "2", "--steps-per-epoch", "1", "--eval-top-k", "1",
                      "--threads", "1", "--cost-weight", "0.5", "--aux-weight", "1.0", "--out", str(out)])
    assert rc == 0
    assert "phantom3d cases" in capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    cfg = history["config"]
    assert cfg["cost_weight"] == 0.5 and cfg["aux_weight"] == 1.0 and cfg["positive_class"] == 1
    rec = history["history"][-1]
    assert 0.0 <= rec["expected_cost"] <= 1.0 and rec["argmax_gmacs"] >= 0.0
    assert rec["argmax_mbconv_blocks"] == sum(op != "skip" for op in rec["genotype_argmax"])
    assert history["ops"] == ops and history["config"]["macro"] == {"strides": [2, [1, 2, 2], 1, 1, 1, 1]}
    assert history["data"]["preprocess"]["extra"]["crop_scale"] == 1.0      # whole lung box
    assert history["data"]["generator"].startswith("engine.train.phantom3d")
    for name in ("genotype_argmax.json", "genotype_selected.json"):
        doc = json.loads((out / name).read_text())
        assert doc["macro"] == {"strides": [2, [1, 2, 2], 1, 1, 1, 1]}
        assert len(doc["genotype"]) == 21 and set(doc["genotype"]) <= set(ops)
    # the exported file builds the network on the searched grid: 8x32x32 -> stem /2, cell 0 /2, cell 1 /(1,2,2)
    path = out / "genotype_selected.json"
    model = create_model("covidnet3d_s", genotype=str(path), num_classes=2, in_chans=1).eval()
    assert model.genotype == load_genotype(str(path))
    feats = []
    model.feature_mix.register_forward_hook(lambda m, i, o: feats.append(o))
    with torch.no_grad():
        model(torch.zeros(1, 1, 8, 32, 32))
    assert tuple(feats[0].shape[2:]) == (2, 4, 4)


def test_search_cli_rejects_unknown_op_and_missing_data(tmp_path, capsys) -> None:
    from engine.cli import main as engine_main

    assert engine_main(["search", "--out", str(tmp_path / "s")]) == 2
    assert "--data" in capsys.readouterr().err
    assert engine_main(["search", "--phantom3d", "4", "--op-set", "skip,9x9x9_conv", "--input-size", "8,32,32",
                        "--slice-spacing", "8", "--out", str(tmp_path / "s")]) == 2
    assert "--op-set" in capsys.readouterr().err


def test_aux_lesion_loss_in_the_search_step() -> None:
    """--aux-weight: the sampled path's loss adds the cli_phantom3d lesion loss on the COVID CAM (masks augmented
    with their inputs); without masks (a plain SearchData) or with weight 0 it is the paper's cross-entropy."""
    from engine.search.cli import PhantomTensorData
    from engine.search.dnas import SearchConfig, _path_loss
    from engine.search.supernet import SuperNet
    from engine.train.cli_phantom3d import cam_targets

    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 32, 32)
    m = torch.zeros(4, 8, 32, 32)
    m[1, 2:6, 4:16, 4:16] = 1.0
    m[3, 2:6, 16:30, 16:30] = 1.0
    y = torch.tensor([0, 1, 0, 1])
    data = PhantomTensorData(x, y, m, seed=1)
    xb, yb, mb = data.batch_masks([0, 1, 2, 3], train=True)
    # the mask moved with its input: lesion voxels are where the augmented copy of the case's lesion landed
    assert float(mb.sum()) == pytest.approx(float(m.sum()), rel=0.3) and float(mb[0].sum()) == 0 and float(mb[1].sum()) > 0
    macro = parse_strides("2,1x2x2,1,1,1,1")
    net = SuperNet("covidnet3d_s", op_set=["skip", "3x3x3_MBConv3"], macro=macro, dropout=0.0).eval()
    idx = [1] * len(net.blocks)
    w = torch.ones(len(net.blocks), 2)

    class Plain:               # a dataset without masks
        labels = y.numpy()

        def batch(self, ind, epoch=0, train=None):
            return x[list(ind)], y[list(ind)]

    ce_cfg = SearchConfig(macro=macro, aux_weight=0.0)
    aux_cfg = SearchConfig(macro=macro, aux_weight=1.0)
    ce, _, _ = _path_loss(net, ce_cfg, Plain(), [0, 1, 2, 3], 0, idx, w)
    plain_aux, _, _ = _path_loss(net, aux_cfg, Plain(), [0, 1, 2, 3], 0, idx, w)
    assert plain_aux.item() == pytest.approx(ce.item())
    data._gen.manual_seed(5)
    total, logits, yy = _path_loss(net, aux_cfg, data, [0, 1, 2, 3], 0, idx, w)
    data._gen.manual_seed(5)
    xa, ya, ma = data.batch_masks([0, 1, 2, 3], train=True)
    feats = []
    h = net.feature_mix.register_forward_hook(lambda mod, i, o: feats.append(o))
    with torch.no_grad():
        lg = net(xa, idx, w)
    h.remove()
    cam = torch.einsum("c,ncdhw->ndhw", net.classifier.weight[1], feats[0]) + net.classifier.bias[1]
    expect = torch.nn.functional.cross_entropy(lg, ya) + torch.nn.functional.binary_cross_entropy_with_logits(
        cam, cam_targets(ma, tuple(cam.shape[1:])))
    assert tuple(cam.shape[1:]) == (2, 4, 4) and float(total.detach()) == pytest.approx(expect.item(), rel=1e-5)
