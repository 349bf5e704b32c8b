"""P1 (Garg et al.) networks: parameter counts against the spec (shared/spec/architectures.md §2.1).

Both columns of the spec's table are asserted: *trainable* (PyTorch ``requires_grad`` parameters) and
*Keras-style* (total + BatchNorm moving mean/variance, what Keras ``model.summary()`` prints).  For InceptionV3,
InceptionResNetV2 and Xception the spec gives only the Keras-style totals; matching those pins down the Keras
layer graph (e.g. InceptionV3's BN without scale).  The numbers are written out here, independently of the
registry's ``expected_params``, and the registry is checked against them too.
"""

from __future__ import annotations

import pytest

from engine.bench.macs import count_params
from engine.models import create_model, model_config

# name -> (trainable, Keras-style total) with in_chans=3, num_classes=3 (spec §2.1 table)
SPEC_P1 = {
    "efficientnet_b0": (4_011_391, 4_053_407),
    "efficientnet_b1": (6_517_027, 6_579_075),
    "efficientnet_b2": (7_705_221, 7_772_789),
    "efficientnet_b3": (10_700_843, 10_788_139),
    "efficientnet_b4": (17_553_995, 17_679_195),
    "efficientnet_b5": (28_346_931, 28_519_667),
    "efficientnet_b6": (40_742_619, 40_967_051),
    "efficientnet_b7": (63_794_643, 64_105_363),
    "resnet50": (23_514_179, 23_567_299),
    "resnet50v2": (23_525_507, 23_570_947),
    "resnet101v2": (42_535_043, 42_632_707),
    "resnet152v2": (58_194_051, 58_337_795),
    "densenet121": (6_956_931, 7_040_579),
    "densenet169": (12_489_475, 12_647_875),
    "densenet201": (18_098_691, 18_327_747),
    "vgg16": (134_272_835, 134_272_835),
    "vgg19": (139_582_531, 139_582_531),
    # spec: Keras-style only; trainable = Keras "Trainable params" with the 3-way head (see engine/models/inception.py)
    "inception_v3": (21_774_499, 21_808_931),
    "inception_resnet_v2": (54_280_803, 54_341_347),
    "xception": (20_813_099, 20_867_627),
}


def _params(name: str) -> list:
    marks = [pytest.mark.slow, pytest.mark.giant] if model_config(name).giant else []
    return [pytest.param(name, id=name, marks=marks)]


ALL = [p for name in SPEC_P1 for p in _params(name)]


@pytest.mark.parametrize("name", ALL)
def test_p1_param_counts_match_spec(name: str) -> None:
    trainable, keras_style = SPEC_P1[name]
    counts = count_params(create_model(name, num_classes=3, in_chans=3))
    assert counts.trainable == trainable, f"{name}: trainable {counts.trainable:,} != spec {trainable:,}"
    assert counts.keras_style == keras_style, f"{name}: Keras-style {counts.keras_style:,} != spec {keras_style:,}"
    assert counts.total == counts.trainable  # nothing frozen by default


@pytest.mark.parametrize("name", sorted(SPEC_P1))
def test_registry_expected_params_agree_with_spec(name: str) -> None:
    cfg = model_config(name)
    trainable, keras_style = SPEC_P1[name]
    assert cfg.expected_params["in3_cls3"] == trainable
    assert cfg.expected_params["in3_cls3_keras"] == keras_style
    assert (cfg.paper, cfg.paper_in_chans, cfg.paper_num_classes) == ("P1", 3, 3)


def test_grey_two_class_default_differs_only_in_stem_and_head() -> None:
    """in_chans=1 / num_classes=2 (the app's default) changes the first conv and the classifier only."""
    paper = count_params(create_model("efficientnet_b0", num_classes=3, in_chans=3)).trainable
    grey = count_params(create_model("efficientnet_b0")).trainable
    stem_diff = 2 * 3 * 3 * 32          # two input channels fewer in the 3x3x32 stem conv
    head_diff = 1280 + 1                # one class fewer: a weight row and a bias
    assert paper - grey == stem_diff + head_diff
