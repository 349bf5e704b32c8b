"""engine.bench.macs: the spec's MAC convention (§0) on hand-computable layers, and the spec's anchors."""

from __future__ import annotations

import pytest
import torch.nn as nn

from engine.bench.macs import count_macs, count_macs_by_layer, count_params, format_count
from engine.models import create_model


def test_conv2d_grouped_and_linear() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2)),   # out 8×10×12
        nn.Conv2d(8, 8, 3, padding=1, groups=4),             # depthwise-ish: C_in/groups = 2
        nn.Flatten(), nn.Linear(8 * 10 * 12, 7),
    )
    expected = (8 * 10 * 12) * 3 * 15 + (8 * 10 * 12) * 2 * 9 + 960 * 7
    assert count_macs(net, (5, 3, 20, 24)) == expected       # batch is ignored: MACs per item


def test_conv3d_counts_all_three_kernel_dims() -> None:
    net = nn.Conv3d(2, 4, (3, 5, 7), padding=(1, 2, 3))
    assert count_macs(net, (1, 2, 6, 10, 12)) == 4 * 6 * 10 * 12 * 2 * 3 * 5 * 7


def test_transposed_conv_uses_input_elements() -> None:
    net = nn.ConvTranspose2d(6, 4, 4, stride=4, groups=2)
    # input elements (6×5×7) × C_out/groups (2) × kernel volume (16)
    assert count_macs(net, (1, 6, 5, 7)) == 6 * 5 * 7 * 2 * 16
    net3 = nn.ConvTranspose3d(2, 3, (2, 3, 3), stride=2)
    assert count_macs(net3, (1, 2, 4, 5, 6)) == 2 * 4 * 5 * 6 * 3 * 18


def test_linear_on_tokens_and_by_layer() -> None:
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    by = count_macs_by_layer(net, (2, 10, 16))                # 10 rows per item
    assert by == {"0": 10 * 16 * 32, "2": 10 * 32 * 4}


def test_param_count_keras_style_and_frozen() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.Linear(8, 2))
    net[2].weight.requires_grad_(False)
    pc = count_params(net)
    assert pc.trainable == 3 * 8 * 9 + 16 + 2
    assert pc.total == pc.trainable + 16
    assert pc.keras_style == pc.total + 16
    assert pc.non_trainable_keras == 16 + 16


@pytest.mark.parametrize("name,params,keras,gmacs", [
    ("lightsqueeze_plain", 724_162, 724_802, 0.288),
    ("lightsqueeze_bypass", 724_162, 724_802, 0.288),
    ("lightsqueeze_proposed", 1_272_450, 1_273_090, 0.467),
])
def test_spec_anchors_p0(name: str, params: int, keras: int, gmacs: float) -> None:
    model = create_model(name, in_chans=3, num_classes=2)
    pc = count_params(model)
    assert (pc.trainable, pc.keras_style) == (params, keras)
    assert count_macs(model, (1, 3, 227, 227)) / 1e9 == pytest.approx(gmacs, abs=0.0005)


def test_format_count() -> None:
    assert format_count(1_272_450) == "1.27 M"
    assert format_count(467_226_560) == "467.23 M"
    assert format_count(950, "B") == "950B"
    assert format_count(2.249e9) == "2.249 G"
