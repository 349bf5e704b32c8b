"""The search stage end to end on a tiny synthetic task: records, exports, resume, evaluation stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.models import create_model
from engine.search.dnas import (
    SearchCancelled,
    SearchConfig,
    evaluate_candidates,
    run_search,
    top_candidates,
)


class BlobData:
    """Class 1 = a bright cube somewhere in the volume; train mode adds random flips (augmentation)."""

    def __init__(self, n: int = 16, shape=(8, 32, 32), seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = np.array([i % 2 for i in range(n)])
        self.x = 0.3 * torch.randn(n, 1, *shape, generator=g)
        for i in range(n):
            if self.labels[i]:
                z, y, x = (int(torch.randint(0, s - 4, (1,), generator=g)) for s in shape)
                self.x[i, 0, z:z + 4, y:y + 8, x:x + 8] += 2.0

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices, epoch=0, train=None):
        idx = torch.as_tensor(list(indices))
        x = self.x[idx]
        if train:
            g = torch.Generator().manual_seed(int(epoch) * 1000 + int(idx.sum()))
            if torch.rand(1, generator=g) < 0.5:
                x = x.flip(4)
        return x, torch.as_tensor(self.labels[idx.numpy()], dtype=torch.long)


SMALL_OPS = ["3x3x3_MBConv3", "5x5x5_MBConv3", "skip"]   # a 3-op space keeps the supernet small for tests


def small_cfg(**kw) -> SearchConfig:
    base = dict(epochs=2, batch_size=4, steps_per_epoch=2, bn_recalibration_batches=1, eval_batch_size=8,
                checkpoint_every=1, seed=3, op_set=SMALL_OPS, alpha_lr=0.05)
    base.update(kw)
    return SearchConfig(**base)


def test_search_records_exports_and_alpha_moves(tmp_path) -> None:
    data = BlobData()
    events = []
    res = run_search(small_cfg(), data, tmp_path, progress=events.append)
    assert len(res.history) == 2
    rec = res.history[-1]
    for key in ("genotype_sampled", "val_acc_sampled", "genotype_argmax", "val_acc_argmax", "train_acc", "tau"):
        assert key in rec
    assert 0.0 <= rec["val_acc_sampled"] <= 1.0 and len(rec["genotype_sampled"]) == 21
    # α moved away from its 1e-3-scale initialisation (straight-through gradients reached it) ...
    probs = np.array(rec["alpha_probs"])
    assert np.abs(probs - 1 / 3).max() > 0.01
    # ... which the released code's boolean mask never does
    frozen = run_search(small_cfg(alpha_grad="none", epochs=1), data, tmp_path / "code")
    assert np.abs(np.array(frozen.history[-1]["alpha_probs"]) - 1 / 3).max() < 0.002
    # per-epoch architecture files and the two final exports are loadable genotypes
    assert sorted(p.name for p in (tmp_path / "architectures").iterdir()) == ["epoch_001.json", "epoch_002.json"]
    for name in ("genotype_argmax.json", "genotype_best_sampled.json"):
        doc = json.loads((tmp_path / name).read_text())
        assert doc["space"] == "covidnet3d_s" and doc["params"] > 0
        model = create_model("covidnet3d_s", genotype=tmp_path / name)
        assert model.genotype == doc["genotype"]
    assert any(e.get("event") == "epoch" for e in events) and any(e.get("event") == "step" for e in events)


@pytest.mark.slow
def test_cancel_and_resume_reproduce_an_uninterrupted_search(tmp_path) -> None:
    data = BlobData()
    straight = run_search(small_cfg(), data, tmp_path / "a")
    calls = {"n": 0}

    def cancel_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(SearchCancelled):
        run_search(small_cfg(), data, tmp_path / "b", cancel=cancel_after_three)
    assert (tmp_path / "b" / "checkpoint.safetensors").is_file()
    resumed = run_search(small_cfg(), data, tmp_path / "b")
    a = [r["alpha_probs"] for r in straight.history]
    b = [r["alpha_probs"] for r in resumed.history]
    assert np.allclose(np.array(a), np.array(b), atol=1e-5)
    assert [r["genotype_sampled"] for r in straight.history] == [r["genotype_sampled"] for r in resumed.history]


def test_resume_refuses_another_search(tmp_path) -> None:
    data = BlobData()
    run_search(small_cfg(epochs=1, steps_per_epoch=1), data, tmp_path)
    with pytest.raises(ValueError, match="another search"):
        run_search(small_cfg(epochs=2, seed=4), data, tmp_path)


@pytest.mark.slow
def test_evaluation_stage_selects_the_best_candidate(tmp_path) -> None:
    data = BlobData()
    res = run_search(small_cfg(), data, tmp_path)
    cands = top_candidates(res.history, k=2)
    assert 1 <= len(cands) <= 2
    assert cands == sorted(cands, key=lambda c: (c["val_acc"], -c["val_loss"], c["epoch"]), reverse=True)
    report = evaluate_candidates("covidnet3d_s", cands, data, tmp_path, epochs=1, batch_size=4)
    assert report["selected"]["eval_acc"] == max(c["eval_acc"] for c in report["candidates"])
    doc = json.loads((tmp_path / "genotype_selected.json").read_text())
    assert doc["genotype"] == report["selected"]["genotype"]


def test_op_macs_count_the_ops_convolutions() -> None:
    """The resource table: skip costs nothing, MBConv6 twice MBConv3 (the expansion doubles both 1×1×1 convs and
    the depthwise conv), 5×5×5 more than 3×3×3; a block at the input resolution costs 8× one after a stride-2
    in every axis with the same widths would."""
    from engine.search.supernet import SuperNet

    net = SuperNet(op_set=["skip", "3x3x3_MBConv3", "3x3x3_MBConv6", "5x5x5_MBConv3"])
    macs = net.op_macs((1, 16, 32, 32))
    assert macs.shape == (len(net.blocks), 4)
    assert (macs[:, 0] == 0).all() and (macs[:, 1:] > 0).all()
    assert torch.allclose(macs[:, 2], 2 * macs[:, 1], rtol=0.02)
    assert (macs[:, 3] > macs[:, 1]).all()
    # halving every input side divides the MACs by 8 wherever the grid stays at least one voxel
    small = net.op_macs((1, 8, 16, 16))
    assert torch.allclose(macs[:4, 1:], 8 * small[:4, 1:], rtol=1e-6)
    # one block's MBConv3 by hand: expand 1×1×1 (c→3c), depthwise 3×3×3, project 1×1×1 (3c→c) on its grid
    net.eval()
    with torch.no_grad():
        x = net.first_block(net.stem(torch.zeros(1, 1, 16, 32, 32)))
        x = net.blocks[0].calib(x)
    c, vox = x.shape[1], x[0, 0].numel()
    assert macs[0, 1] == pytest.approx(vox * (c * 3 * c + 3 * c * 27 + 3 * c * c), rel=0.05)


def test_cost_weight_pushes_alpha_to_cheap_ops(tmp_path) -> None:
    """With the resource term the architecture step prefers skips (zero MACs) and, among MBConvs, the cheaper
    ones; without it α has no such drift.  The history records the expected cost and the argmax's MACs."""
    data = BlobData()
    plain = run_search(small_cfg(epochs=3, steps_per_epoch=3), data, tmp_path / "plain")
    costly = run_search(small_cfg(epochs=3, steps_per_epoch=3, cost_weight=50.0), data, tmp_path / "cost")
    skip = SMALL_OPS.index("skip")
    p_plain = np.array(plain.history[-1]["alpha_probs"])
    p_cost = np.array(costly.history[-1]["alpha_probs"])
    assert p_cost[:, skip].mean() > 0.45 and p_plain[:, skip].mean() < 0.4   # 1/3 at the start
    assert costly.history[-1]["expected_cost"] < plain.history[-1]["expected_cost"]
    assert costly.history[-1]["argmax_gmacs"] < plain.history[-1]["argmax_gmacs"]
    assert costly.genotype_argmax.count("skip") > plain.genotype_argmax.count("skip")
    assert costly.history[-1]["argmax_mbconv_blocks"] == 21 - costly.genotype_argmax.count("skip")
