"""Parameter counts of every registered model against the spec (``ModelConfig.expected_params``).

Keys are ``f"in{in_chans}_cls{num_classes}"`` (trainable parameters, PyTorch ``requires_grad``) or the same
with a ``_keras`` suffix or ``keras_`` prefix (Keras-style total: + BatchNorm moving mean/variance).  Models are built on the
``meta`` device without initialisation, so even the 139 M-parameter VGG19 costs no memory or time here.
"""

from __future__ import annotations

import re

import pytest

from engine.bench.macs import count_params
from engine.models import list_models, model_config
from engine.models.cli import build_for_counting

KEY = re.compile(r"^(keras_)?in(\d+)_cls(\d+)(_keras)?$")


def _cases() -> list:
    cases = []
    for name in list_models():
        for key, value in sorted(model_config(name).expected_params.items()):
            cases.append(pytest.param(name, key, value, id=f"{name}-{key}"))
    return cases


@pytest.mark.parametrize("name,key,expected", _cases())
def test_parameter_count_matches_spec(name: str, key: str, expected: int) -> None:
    match = KEY.match(key)
    assert match, f"{name}: malformed expected_params key {key!r} (want in<C>_cls<K>, optionally keras_ / _keras)"
    in_chans, num_classes, keras = int(match[2]), int(match[3]), bool(match[1] or match[4])
    model, _ = build_for_counting(name, in_chans, num_classes, prefer_meta=True)
    pc = count_params(model)
    got = pc.keras_style if keras else pc.trainable
    assert got == expected, f"{name} {key}: {got:,} != spec {expected:,} (diff {got - expected:+,})"


def test_issue_anchor_counts_are_registered() -> None:
    """The counts issue 3 names explicitly must be asserted somewhere (a family dropping its anchor fails)."""
    anchors = {
        ("lightsqueeze_proposed", "in3_cls2"): 1_272_450, ("lightsqueeze_plain", "in3_cls2"): 724_162,
        ("spp_covid_net", "in3_cls3"): 859_883, ("spp_covid_net", "in3_cls3_keras"): 862_331,
        ("darkcovid_net", "in3_cls3"): 1_167_361, ("squeezenet1_0", "in3_cls3"): 736_963,
        ("mobilenet_v1", "in3_cls3_keras"): 3_231_939,
        ("efficientnet_b0", "in3_cls3"): 4_011_391, ("efficientnet_b5", "in3_cls3"): 28_346_931,
        ("densenet121", "in3_cls3"): 6_956_931, ("resnet50", "in3_cls3"): 23_514_179,
        ("vgg16", "in3_cls3"): 134_272_835, ("mc3_18", "in3_cls3"): 11_491_779,
        ("resnet3d_101", "in3_cls3"): 85_251_267, ("densenet3d_121", "in3_cls3"): 11_289_603,
    }
    registered = set(list_models())
    for (name, key), value in anchors.items():
        if name not in registered:
            pytest.fail(f"{name} is not registered")
        assert model_config(name).expected_params.get(key) == value, f"{name}: {key} should assert {value:,}"


def test_covid_net_within_one_percent_of_published() -> None:
    model, _ = build_for_counting("covid_net", 3, 3, prefer_meta=True)
    assert abs(count_params(model).trainable / 117.4e6 - 1) < 0.01
