"""Family-specific behaviour of the P0 / P2 / P3 networks (spec §1, §3, §4) beyond the shared smoke tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from engine.bench.macs import count_macs, count_params
from engine.models import create_model
from engine.models.cli import build_for_counting
from engine.xai import explain


def _record(store: dict, key: str):
    def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:   # returns None: output unchanged
        store.setdefault(key, tuple(out.shape))
    return hook


def _params(name: str, **kw) -> int:
    return count_params(create_model(name, in_chans=3, **kw)).trainable


# ------------------------------------------------------------------------------------------------------- P0
@pytest.mark.parametrize("kw,expected", [
    ({"up_filters": 63}, 1_264_129),                     # rounds to the paper's "1.26 M"
    ({"up_filters": 62}, 1_255_808),
    ({"up_filters": 16, "up_kernel": 8}, 1_266_258),
    ({"up_filters": 128}, 1_804_994),
    ({"skip": "fire3"}, 1_272_450),                      # shape-identical skip source
    ({"head": "conv"}, 1_272_450),                       # 1×1 conv head is parameter-identical to the FC
])
def test_lightsqueeze_proposed_reconciliation_table(kw: dict, expected: int) -> None:
    assert _params("lightsqueeze_proposed", **kw) == expected


def test_lightsqueeze_proposed_geometry_at_227() -> None:
    model = create_model("lightsqueeze_proposed").eval()
    seen = {}
    model.features.fire2.register_forward_hook(_record(seen, "fire2"))
    model.features.fire9.register_forward_hook(_record(seen, "fire9"))
    model.up.register_forward_hook(_record(seen, "up"))
    model.fuse.register_forward_hook(_record(seen, "fuse"))
    with torch.no_grad():
        model(torch.zeros(1, 1, 227, 227))
    assert seen == {"fire2": (1, 128, 56, 56), "fire9": (1, 512, 14, 14), "up": (1, 64, 56, 56),
                    "fuse": (1, 128, 56, 56)}


@pytest.mark.parametrize("size", [(224, 224), (256, 192), (160, 300)])
def test_lightsqueeze_proposed_any_input_size(size: tuple[int, int]) -> None:
    model = create_model("lightsqueeze_proposed").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, *size)).shape == (1, 2)


def test_lightsqueeze_conv_head_cam_uses_the_conv() -> None:
    model = create_model("lightsqueeze_proposed", head="conv").eval()
    x = torch.randn(1, 1, 227, 227)
    raw, logits = explain(model, x, "cam", upsample=False, return_logits=True)
    np.testing.assert_allclose(raw.mean(), logits.max(), rtol=1e-4, atol=1e-5)


def test_custom_fire_and_bypass() -> None:
    plain = create_model("lightsqueeze_plain").eval()
    bypass = create_model("lightsqueeze_bypass").eval()
    vanilla = create_model("squeezenet1_1").eval()
    assert isinstance(plain.features.fire2.squeeze_bn, nn.BatchNorm2d)
    assert isinstance(plain.features.fire2.expand3x3_act, nn.ELU) and isinstance(plain.head.act10, nn.ELU)
    assert isinstance(vanilla.features.fire2.squeeze_bn, nn.Identity)
    assert isinstance(vanilla.features.fire2.squeeze_act, nn.ReLU)
    assert [n for n, m in bypass.features.named_children() if getattr(m, "bypass", False)] == \
        ["fire3", "fire5", "fire7", "fire9"]
    bypass.load_state_dict(plain.state_dict())           # same weights, different wiring
    x = torch.randn(1, 1, 227, 227)
    with torch.no_grad():
        assert not torch.allclose(plain(x), bypass(x))


def test_squeezenet_pool_positions() -> None:
    v10 = [n for n, _ in create_model("squeezenet1_0").features.named_children()]
    v11 = [n for n, _ in create_model("squeezenet1_1").features.named_children()]
    assert v10 == ["conv1", "act1", "pool1", "fire2", "fire3", "fire4", "pool4", "fire5", "fire6", "fire7",
                   "fire8", "pool8", "fire9"]
    assert v11 == ["conv1", "act1", "pool1", "fire2", "fire3", "pool3", "fire4", "fire5", "pool5", "fire6",
                   "fire7", "fire8", "fire9"]


def test_bad_lightsqueeze_options() -> None:
    with pytest.raises(ValueError, match="skip"):
        create_model("lightsqueeze_proposed", skip="fire4")
    with pytest.raises(ValueError, match="head"):
        create_model("lightsqueeze_proposed", head="mlp")


# ------------------------------------------------------------------------------------------------------- P2
def test_spp_covid_net_spp_and_input_size() -> None:
    model = create_model("spp_covid_net", in_chans=3, num_classes=3)
    assert model.classifier.in_features == 9_728                  # 1,024 + 2,304 + 6,400
    assert count_macs(model, (1, 3, 256, 256)) / 1e9 == pytest.approx(0.192, abs=5e-4)
    with pytest.raises(ValueError, match="input size"):
        model(torch.zeros(1, 3, 320, 320))
    with pytest.raises(ValueError, match="too small"):
        model(torch.zeros(1, 3, 64, 64))
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)                   # Keras defaults
    assert all(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1
               for m in model.modules() if isinstance(m, nn.LeakyReLU))


def test_spp_covid_net_keras_flatten_order_option() -> None:
    a = create_model("spp_covid_net").eval()
    b = create_model("spp_covid_net", keras_flatten=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 1, 256, 256) * 255
    with torch.no_grad():
        fa, fb = a.spp(a.features(x)), b.spp(b.features(x))
    assert torch.equal(fa.sort().values, fb.sort().values) and not torch.equal(fa, fb)


def test_darkcovid_net_native_256_and_padding_quirk() -> None:
    assert _params("darkcovid_net", num_classes=3, input_size=(256, 256)) == 1_167_586
    model = create_model("darkcovid_net", in_chans=3, num_classes=3, input_size=(256, 256)).eval()
    shapes = {}
    for name in ("triple3", "triple6", "conv8"):
        getattr(model.features, name).register_forward_hook(_record(shapes, name))
    with torch.no_grad():
        model(torch.zeros(1, 3, 256, 256))
    assert shapes == {"triple3": (1, 32, 66, 66), "triple6": (1, 256, 11, 11), "conv8": (1, 256, 13, 13)}
    assert count_macs(model, (1, 3, 256, 256)) / 1e9 == pytest.approx(0.290, abs=5e-4)


# ------------------------------------------------------------------------------------------------------- P3
def test_covid_net_widths_macs_and_wiring() -> None:
    model, _ = build_for_counting("covid_net", 3, 3)
    pepx = model.stages.stage1.pepx[0]
    assert (pepx.project1.conv.out_channels, pepx.expand.conv.out_channels) == (48, 104)
    assert model.stages.stage4.pepx[0].expand.conv.out_channels == 832
    assert [len(s.pepx) for s in model.stages.values()] == [3, 4, 6, 3]
    assert count_macs(model, (1, 3, 224, 224)) / 1e9 == pytest.approx(2.249, abs=5e-4)


def test_covid_net_stage_dense_connectivity() -> None:
    """P_s,j sees S_s + Σ_{i<j} P_s,i: with all PEPX but the first zeroed, each later PEPX input grows."""
    from engine.models.covid_net import Stage

    stage = Stage(4, 8, 3, proj=2, expand=4, bn=False)
    inputs = []
    for block in stage.pepx:
        block.register_forward_hook(lambda m, i, o: inputs.append(i[0].detach().clone()) and None)
    z = torch.randn(1, 4, 5, 5)
    out = stage(z)
    s = stage.shortcut(z)
    p = [stage.pepx[0](z)]
    torch.testing.assert_close(inputs[1], s + p[0])
    p.append(stage.pepx[1](s + p[0]))
    torch.testing.assert_close(inputs[2], s + p[0] + p[1])
    torch.testing.assert_close(out, s + p[0] + p[1] + stage.pepx[2](s + p[0] + p[1]))
