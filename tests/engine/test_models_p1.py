"""Family-specific checks of the P1 (Garg et al.) networks against shared/spec/architectures.md §2.1.

The generic forward / backward / CAM smoke test over ``list_models()`` lives in test_models_smoke.py and the
parameter counts in test_param_counts_p1.py; this file checks what only a family knows: EfficientNet's scaled
stage table, ResNet v1 / v2 block layouts, DenseNet compression, the Keras spatial arithmetic of the Inception
family, VGG's head, and that every CAM layer sits where the spec says, with H and W kept apart.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from engine.bench.macs import count_macs, count_params
from engine.models import create_model, list_models, model_config
from engine.models._layers_p1 import BatchNorm2dNoScale, StochasticDepth
from engine.models.densenet import DenseBlock, Transition
from engine.models.efficientnet import B0_STAGES, MBConv, round_filters, round_repeats, scaled_stages
from engine.models.inception import InceptionResidual
from engine.models.resnet import PreActBottleneck

P1_NAMES = [f"efficientnet_b{i}" for i in range(8)] + [
    "resnet50", "resnet50v2", "resnet101v2", "resnet152v2", "densenet121", "densenet169", "densenet201",
    "inception_v3", "inception_resnet_v2", "xception", "vgg16", "vgg19"]


# One representative per layout in the default run; the other depths / widths of a family run with the slow set.
REPRESENTATIVE = {"efficientnet_b0", "efficientnet_b3", "resnet50", "resnet50v2", "densenet121", "inception_v3",
                  "inception_resnet_v2", "xception"}


def _marked(names: list[str]) -> list:
    params = []
    for n in names:
        marks = [pytest.mark.slow] if n not in REPRESENTATIVE else []
        if model_config(n).giant:
            marks.append(pytest.mark.giant)
        params.append(pytest.param(n, id=n, marks=marks))
    return params


def _capture(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(output of ``layer``, logits) for ``x`` in eval mode."""
    out: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: out.append(o))
    try:
        with torch.no_grad():
            logits = model.eval()(x)
    finally:
        handle.remove()
    return out[0], logits


# ------------------------------------------------------------------------------------------------ registry
def test_all_twenty_p1_models_registered_with_keras_input_sizes() -> None:
    assert set(P1_NAMES) <= set(list_models())
    assert len(P1_NAMES) == 20
    keras_sizes = dict(zip((f"efficientnet_b{i}" for i in range(8)), (224, 240, 260, 300, 380, 456, 528, 600)))
    keras_sizes.update({n: 299 for n in ("inception_v3", "inception_resnet_v2", "xception")})
    for name in P1_NAMES:
        cfg = model_config(name)
        size = keras_sizes.get(name, 224)
        assert cfg.input_size == (size, size), name
        assert cfg.paper == "P1" and cfg.spatial_dims == 2
        assert cfg.cam_kind == ("gradcam" if name.startswith("vgg") else "cam"), name
        assert cfg.giant == (name in {"vgg16", "vgg19", "resnet152v2", "efficientnet_b6", "efficientnet_b7"})
    assert model_config("EfficientNetB5").name == "efficientnet_b5"      # Keras names work as aliases
    assert model_config("InceptionResNetV2").name == "inception_resnet_v2"


# -------------------------------------------------------------------------------------------- EfficientNet
def test_b0_stage_table_is_the_spec_table() -> None:
    spec = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
            (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    assert scaled_stages(1.0, 1.0) == spec
    assert [(s.expand_ratio, s.kernel, s.stride, s.out_chans, s.repeats) for s in B0_STAGES] == spec


@pytest.mark.parametrize("chans", [8, 12, 16, 24, 32, 40, 80, 112, 192, 320, 1280])
@pytest.mark.parametrize("width", [1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 0.35, 1.7])
def test_round_filters_rule(chans: int, width: float) -> None:
    scaled = chans * width
    got = round_filters(chans, width)
    assert got % 8 == 0 and got >= 8
    assert got >= 0.9 * scaled                                  # never below 90 % of the scaled value
    nearest = max(8, int(scaled + 4) // 8 * 8)                  # nearest multiple of 8 (ties up)
    assert got == (nearest if nearest >= 0.9 * scaled else nearest + 8)


def test_round_filters_bumps_up_when_rounding_loses_more_than_ten_percent() -> None:
    assert round_filters(7, 1.7) == 16          # 11.9 -> nearest 8 is < 10.71, so 16
    assert round_filters(112, 1.6) == 176       # 179.2 -> 176 (within 90 %)
    assert round_repeats(3, 3.1) == 10 and round_repeats(1, 1.1) == 2


def test_b5_and_b7_scaled_tables() -> None:
    # (out channels, repeats) per stage; B5: 39 blocks, B7: 55 blocks as in Keras (block1a ... block7c/7d)
    b5 = [(24, 3), (40, 5), (64, 5), (128, 7), (176, 7), (304, 9), (512, 3)]
    b7 = [(32, 4), (48, 7), (80, 7), (160, 10), (224, 10), (384, 13), (640, 4)]
    assert [(s[3], s[4]) for s in scaled_stages(1.6, 2.2)] == b5
    assert [(s[3], s[4]) for s in scaled_stages(2.0, 3.1)] == b7
    assert sum(r for _, r in b5) == 39 and sum(r for _, r in b7) == 55
    assert (round_filters(32, 1.6), round_filters(1280, 1.6)) == (48, 2048)
    assert (round_filters(32, 2.0), round_filters(1280, 2.0)) == (64, 2560)


def test_efficientnet_b2_modules_realise_the_scaled_table() -> None:
    model = create_model("efficientnet_b2", num_classes=3, in_chans=3)
    table = scaled_stages(1.1, 1.2)
    assert model.stem.conv.out_channels == round_filters(32, 1.1) == 32
    assert len(model.blocks) == len(table)
    for stage, (expand, kernel, stride, out_chans, repeats) in zip(model.blocks, table):
        assert len(stage) == repeats
        for j, block in enumerate(stage):
            assert isinstance(block, MBConv)
            dw = block.depthwise.conv
            assert dw.kernel_size == (kernel, kernel) and dw.groups == dw.in_channels
            assert dw.stride == ((stride, stride) if j == 0 else (1, 1))
            assert block.project.conv.out_channels == out_chans
            assert isinstance(block.expand, nn.Identity) == (expand == 1)
            in_chans = block.depthwise.conv.in_channels // expand
            assert block.se.reduce.out_channels == max(1, int(in_chans * 0.25))   # SE on the block *input*
            assert block.use_residual == (j > 0 or (stride == 1 and in_chans == out_chans))
    assert model.head.conv.out_channels == 1408 and model.classifier.in_features == 1408


def test_efficientnet_stochastic_depth_schedule_and_eval_determinism() -> None:
    model = create_model("efficientnet_b0")
    blocks = [b for stage in model.blocks for b in stage]
    assert len(blocks) == 16
    for i, block in enumerate(blocks):
        if block.use_residual:
            assert isinstance(block.drop_path, StochasticDepth)
            assert block.drop_path.p == pytest.approx(0.2 * i / 16)
    x = torch.randn(2, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


def test_stochastic_depth_drops_whole_samples_and_rescales() -> None:
    sd = StochasticDepth(0.5).train()
    x = torch.ones(4000, 2, 3, 3)
    y = sd(x)
    per_sample = y.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 2.0).all(1))   # all-or-nothing per sample, 1/(1-p)
    kept = (per_sample[:, 0] > 0).float().mean().item()
    assert 0.45 < kept < 0.55
    assert torch.equal(sd.eval()(x), x)
    with pytest.raises(ValueError, match="stochastic-depth"):
        StochasticDepth(1.0)


# -------------------------------------------------------------------------------------------------- ResNet
def test_resnet50_v1_keeps_the_stride_on_the_first_1x1_like_keras() -> None:
    keras = create_model("resnet50", num_classes=3, in_chans=3)
    v15 = create_model("resnet50", num_classes=3, in_chans=3, stride_in_1x1=False)
    first = keras.layer2[0]
    assert first.conv1.conv.stride == (2, 2) and first.conv2.conv.stride == (1, 1)
    assert v15.layer2[0].conv1.conv.stride == (1, 1) and v15.layer2[0].conv2.conv.stride == (2, 2)
    assert count_params(keras).trainable == count_params(v15).trainable


def test_resnet_v1_block_ends_with_relu_v2_block_does_not() -> None:
    v1 = create_model("resnet50").eval()
    v2 = create_model("resnet50v2").eval()
    x = torch.randn(1, 1, 64, 64)
    v1_out, _ = _capture(v1, "layer1.1", x)
    v2_out, _ = _capture(v2, "layer1.1", x)
    assert v1_out.min() >= 0
    assert v2_out.min() < 0          # pre-activation: the sum is passed on un-activated


def test_resnetv2_preactivation_order_and_shortcut_source() -> None:
    model = create_model("resnet50v2").eval()
    block = model.layer2[0]
    assert isinstance(block, PreActBottleneck) and block.projection
    order: list[str] = []
    seen: dict[str, tuple] = {}
    handles = []
    for name, mod in block.named_modules():
        if name and not list(mod.children()):
            def hook(m, inp, out, _n=name):
                order.append(_n)
                seen[_n] = (inp[0], out)
            handles.append(mod.register_forward_hook(hook))
    x = torch.randn(1, 256, 16, 16)
    with torch.no_grad():
        y = block(x)
    for h in handles:
        h.remove()
    assert order[:2] == ["preact_bn", "preact_act"]                 # BN -> ReLU before any conv
    convs = [n for n in order if "conv" in n and "bn" not in n and "act" not in n]
    assert order.index("preact_act") < order.index(convs[0])
    assert torch.equal(seen["shortcut"][0], seen["preact_act"][1])  # projection fed by the pre-activation
    assert torch.equal(seen["conv1.conv"][0], seen["preact_act"][1])
    assert [n for n in order if n.endswith("bn")] == ["preact_bn", "conv1.bn", "conv2.bn"]  # conv3: no BN after
    torch.testing.assert_close(y, seen["conv3"][1] + seen["shortcut"][1])  # plain addition, no activation
    # identity block: shortcut is the raw input, not the pre-activation
    ident = model.layer2[1]
    with torch.no_grad():
        z = ident(y)
        residual = ident.conv3(ident.conv2(ident.conv1(ident.preact_act(ident.preact_bn(y)))))
    torch.testing.assert_close(z - residual, y)


def _block_sizes(model: nn.Module, x: torch.Tensor) -> list[list[int]]:
    sizes: list[list[int]] = []
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        sizes.append([])
        for block in stage:
            block.register_forward_hook(lambda _m, _i, o, s=sizes[-1]: s.append(o.shape[-1]))
    with torch.no_grad():
        model.eval()(x)
    return sizes


def test_resnetv2_downsamples_in_the_last_block_like_keras_stack2() -> None:
    x = torch.randn(1, 1, 64, 64)
    keras = _block_sizes(create_model("resnet50v2"), x)
    assert keras == [[16, 16, 8], [8, 8, 8, 4], [4] * 5 + [2], [2, 2, 2]]
    first = _block_sizes(create_model("resnet50v2", downsample_first=True), x)
    assert first == [[16, 16, 16], [8, 8, 8, 8], [4] * 6, [2, 2, 2]]
    model = create_model("resnet50v2")
    last = model.layer1[2]
    assert isinstance(last.shortcut, nn.MaxPool2d) and last.shortcut.kernel_size == 1 and last.shortcut.stride == 2
    assert model.layer4[2].conv2.conv.stride == (1, 1)


def test_resnet_macs_keras_layouts_vs_spec_sketch() -> None:
    """Same parameters, different stride placement: the spec's MAC column (4.087 G for ResNet50 and ResNet50V2)
    was sketched with the stride in the first block's 3x3; the Keras layouts (our defaults) compute less."""
    shape = (1, 3, 224, 224)
    v1_keras = create_model("resnet50", num_classes=3, in_chans=3)
    v1_sketch = create_model("resnet50", num_classes=3, in_chans=3, stride_in_1x1=False)
    v2_keras = create_model("resnet50v2", num_classes=3, in_chans=3)
    v2_sketch = create_model("resnet50v2", num_classes=3, in_chans=3, downsample_first=True)
    assert count_params(v2_keras).trainable == count_params(v2_sketch).trainable
    assert count_macs(v1_sketch, shape) == pytest.approx(4.087e9, rel=1e-3)
    assert count_macs(v2_sketch, shape) == count_macs(v1_sketch, shape)
    assert count_macs(v1_keras, shape) == pytest.approx(3.856e9, rel=1e-3)
    assert count_macs(v2_keras, shape) == pytest.approx(3.480e9, rel=1e-3)


# ------------------------------------------------------------------------------------------------ DenseNet
@pytest.mark.parametrize("name,blocks,final", [("densenet121", (6, 12, 24, 16), 1024),
                                                ("densenet169", (6, 12, 32, 32), 1664),
                                                ("densenet201", (6, 12, 48, 32), 1920)])
def test_densenet_blocks_growth_and_transition_compression(name: str, blocks: tuple, final: int) -> None:
    model = create_model(name, num_classes=3, in_chans=3)
    dense = [m for m in model.features if isinstance(m, DenseBlock)]
    trans = [m for m in model.features if isinstance(m, Transition)]
    assert [len(b) for b in dense] == list(blocks) and len(trans) == 3
    chans = 64
    for i, block in enumerate(dense):
        for j, layer in enumerate(block.values()):
            assert layer.norm1.num_features == chans + 32 * j
            assert layer.conv1.out_channels == 128 and layer.conv2.out_channels == 32     # 4k bottleneck, k = 32
        chans += 32 * len(block)
        if i < 3:
            t = trans[i]
            assert t.conv.in_channels == chans and t.conv.out_channels == chans // 2    # compression 0.5
            assert isinstance(t.pool, nn.AvgPool2d) and t.pool.kernel_size == 2 and t.pool.stride == 2
            chans //= 2
    assert chans == final == model.classifier.in_features
    assert list(model.features)[-2:] == [model.features.norm5, model.features.relu5]


def test_dense_block_keeps_its_input_and_appends_growth() -> None:
    block = DenseBlock(3, 16).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        y = block(x)
    assert y.shape == (2, 16 + 3 * 32, 8, 8)
    assert torch.equal(y[:, :16], x)


# --------------------------------------------------------------------------------- Inception / Xception
def test_batchnorm_without_scale_learns_only_a_shift() -> None:
    bn = BatchNorm2dNoScale(4).train()
    assert bn.weight is None and bn.bias.shape == (4,)
    assert sum(p.numel() for p in bn.parameters()) == 4
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.0, 1.0, -2.0, 3.0]))
    x = torch.randn(8, 4, 5, 5) * 7 + 3
    y = bn(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), bn.bias.detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std((0, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_inception_nets_use_keras_scale_free_bn_xception_full_bn() -> None:
    for name in ("inception_v3", "inception_resnet_v2"):
        bns = [m for m in create_model(name).modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(isinstance(m, BatchNorm2dNoScale) for m in bns), name
    bns = [m for m in create_model("xception").modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(isinstance(m, BatchNorm2dNoScale) for m in bns)


def test_inception_resnet_v2_residual_scales() -> None:
    model = create_model("inception_resnet_v2")
    assert [b.scale for b in model.block35] == [0.17] * 10
    assert [b.scale for b in model.block17] == [0.1] * 20
    assert [b.scale for b in model.block8] == [0.2] * 9 + [1.0]
    assert all(isinstance(b.act, nn.ReLU) for b in list(model.block8)[:9])
    assert isinstance(model.block8[-1].act, nn.Identity)      # final block8: activation=None
    assert all(isinstance(b, InceptionResidual) and b.up.bias is not None for b in model.block8)


def _valid(n: int, k: int = 3, s: int = 2) -> int:
    return (n - k) // s + 1


def keras_cam_size(name: str, n: int) -> int:
    """Side of the CAM map for an n-pixel side, from Keras' padding arithmetic (valid = floor, same = ceil)."""
    if name in ("inception_v3", "inception_resnet_v2"):
        n = _valid(n)                              # 3x3/2 valid conv
        n = _valid(n, 3, 1)                        # 3x3/1 valid conv (the next 3x3 is "same")
        n = _valid(n)                              # 3x3/2 max-pool
        n = _valid(n, 3, 1)                        # 3x3/1 valid conv (after the 1x1)
        n = _valid(n)                              # 3x3/2 max-pool -> 35 at 299
        return _valid(_valid(n))                   # two grid reductions (valid, stride 2) -> 17 -> 8 at 299
    if name == "xception":
        n = _valid(_valid(n), 3, 1)                # block1: 3x3/2 valid conv, 3x3/1 valid conv
        for _ in range(4):                          # blocks 2, 3, 4, 13: "same" stride-2 pools
            n = math.ceil(n / 2)
        return n
    if name.startswith("vgg"):
        return n // 16                             # Grad-CAM at block5_conv3, before the last pool
    return math.ceil(n / 32)


@pytest.mark.parametrize("name", _marked(P1_NAMES))
def test_cam_layer_grid_on_a_non_square_input(name: str) -> None:
    """The CAM target's map has the Keras size along H and W separately (no axis swap) and feeds the head."""
    cfg = model_config(name)
    t = cfg.test_input_size[0]
    h, w = t + 32, t                         # taller than wide
    model = create_model(name)
    feats, logits = _capture(model, cfg.cam_layer, torch.randn(1, 1, h, w))
    assert feats.shape[-2:] == (keras_cam_size(name, h), keras_cam_size(name, w))
    assert logits.shape == (1, 2)
    with torch.no_grad():                    # the CAM layer is the end of forward_features: the head alone
        torch.testing.assert_close(model.forward_head(feats), logits)   # turns its map into the logits
    head = model.get_submodule(cfg.classifier)
    assert isinstance(head, nn.Linear) and head.out_features == 2
    if cfg.cam_kind == "cam":                # GAP -> Linear: the classifier reads exactly the CAM channels
        assert head.in_features == feats.shape[1]


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("inception_v3", 8), ("inception_resnet_v2", 8), ("xception", 10)])
def test_inception_family_native_cam_size(name: str, size: int) -> None:
    model = create_model(name)
    feats, _ = _capture(model, model_config(name).cam_layer, torch.randn(1, 1, 299, 299))
    assert feats.shape[-2:] == (size, size) == (keras_cam_size(name, 299),) * 2


# ----------------------------------------------------------------------------------------------------- VGG
@pytest.mark.slow
@pytest.mark.giant
@pytest.mark.parametrize("name,convs", [("vgg16", 13), ("vgg19", 16)])
def test_vgg_configuration_and_fc_head(name: str, convs: int) -> None:
    model = create_model(name, num_classes=3, in_chans=3)
    conv_layers = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(conv_layers) == convs and all(c.kernel_size == (3, 3) and c.bias is not None for c in conv_layers)
    assert [c.out_channels for c in conv_layers][-1] == 512
    assert (model.fc1.in_features, model.fc1.out_features) == (512 * 7 * 7, 4096)
    assert (model.fc2.in_features, model.fc2.out_features) == (4096, 4096)
    assert (model.classifier.in_features, model.classifier.out_features) == (4096, 3)
    assert model.fc1_drop.p == 0.0 and model.fc2_drop.p == 0.0           # Keras top has no dropout
    assert model_config(name).cam_layer == f"features.block5_relu{3 if name == 'vgg16' else 4}"
    assert 0.005 < model.fc1.weight[:256].std().item() < 0.02             # initialised (skip_init + init_weights)


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ["efficientnet_b0", "resnet50v2", "densenet121", "inception_v3", "xception"])
def test_clear_errors_for_wrong_channels_and_too_small_slices(name: str) -> None:
    model = create_model(name)
    with pytest.raises(ValueError, match=r"built for 1 input channel\(s\) but got 3"):
        model(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match=r"needs an input of at least"):
        model(torch.zeros(1, 1, 16, 128))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model(torch.zeros(1, 128, 128))
    with pytest.raises(ValueError, match="in_chans must be a positive integer"):
        create_model(name, in_chans=0)
