"""Every registered network, automatically: forward, backward, output shape, CAM / Grad-CAM shape.

Parametrised over ``list_models()``, so a family added to the registry is tested without touching this file.
Inputs use ``ModelConfig.test_input_size`` (reduced, for CI) or the native ``input_size``; models flagged
``giant`` are marked ``giant`` + ``slow`` (skipped by ``-m "not slow"``, still run once in CI).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from engine.models import create_model, list_models, model_config
from engine.models.registry import _ALIASES
from engine.xai import explain

# Every name the issue requires (issue 3); aliases are welcome on top.
REQUIRED = {
    "squeezenet1_0", "squeezenet1_1", "lightsqueeze_plain", "lightsqueeze_bypass", "lightsqueeze_proposed",
    "spp_covid_net", "darkcovid_net", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "shufflenet_v1", "covid_net",
    *(f"efficientnet_b{i}" for i in range(8)), "resnet50", "resnet50v2", "resnet101v2", "resnet152v2",
    "densenet121", "densenet169", "densenet201", "inception_v3", "inception_resnet_v2", "xception", "vgg16",
    "vgg19",
    "covidnet3d_s", "covidnet3d_l", "mc3_18", "resnet3d_101", "densenet3d_121",
}


def _params() -> list:
    out = []
    for name in list_models():
        cfg = model_config(name)
        marks = [pytest.mark.giant, pytest.mark.slow] if cfg.giant else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def _input(name: str, batch: int = 2) -> torch.Tensor:
    cfg = model_config(name)
    size = tuple(cfg.test_input_size or cfg.input_size)
    assert len(size) == cfg.spatial_dims, f"{name}: input size {size} does not match spatial_dims"
    return torch.randn((batch, 1) + size)


def test_all_required_names_are_registered() -> None:
    missing = REQUIRED - set(list_models())
    assert not missing, f"not registered yet: {sorted(missing)}"


def test_aliases_resolve_to_registered_models() -> None:
    list_models()
    for alias, name in _ALIASES.items():
        assert model_config(alias).name == name


@pytest.mark.parametrize("name", _params())
def test_config_is_consistent(name: str) -> None:
    cfg = model_config(name)
    assert cfg.name == name and cfg.paper and cfg.family
    assert cfg.spatial_dims in (2, 3) and len(cfg.input_size) == cfg.spatial_dims
    assert cfg.cam_kind in ("cam", "gradcam")
    assert cfg.cam_layer, f"{name}: no cam_layer configured"
    for key in cfg.expected_params:
        assert re.match(r"^(keras_)?in\d+_cls\d+(_keras)?$", key), f"{name}: bad expected_params key {key!r}"


@pytest.mark.parametrize("name", _params())
def test_forward_backward_and_cam(name: str) -> None:
    cfg = model_config(name)
    torch.manual_seed(0)
    model = create_model(name)                  # defaults: grey CT (in_chans=1), 2 classes
    x = _input(name)
    layer_names = {n for n, _ in model.named_modules()}
    assert cfg.cam_layer in layer_names, f"{name}: cam_layer {cfg.cam_layer!r} is not a module"
    if cfg.classifier:
        assert cfg.classifier in layer_names, f"{name}: classifier {cfg.classifier!r} is not a module"

    # --- training-mode forward + backward
    model.train()
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2), f"{name}: output {getattr(out, 'shape', out)}"
    loss = nn.functional.cross_entropy(out, torch.tensor([0, 1]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None), f"{name}: non-finite gradient"
    first_conv = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    assert first_conv.in_channels == 1
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0, \
        f"{name}: no gradient reaches the first layer"
    model.zero_grad(set_to_none=True)

    # --- eval: the configured explainer on the input's own grid (one forward (+ backward) each)
    model.eval()
    x1 = x[:1]
    if cfg.cam_kind == "cam":
        raw, logits = explain(model, x1, "cam", upsample=False, return_logits=True)
        assert raw.shape[0] == 1 and raw.ndim == x1.ndim - 1 and np.isfinite(raw).all()
        if isinstance(model.get_submodule(cfg.classifier), nn.Linear):
            # Zhou et al.'s CAM is exact for GAP -> Linear: the mean of the class map *is* the class logit.
            np.testing.assert_allclose(raw.reshape(1, -1).mean(1), logits.max(1), rtol=1e-3, atol=1e-3,
                                       err_msg=f"{name}: cam_layer does not feed GAP -> classifier directly")
    maps, logits = explain(model, x1, "gradcam", target=0, return_logits=True)
    assert maps.shape == (1,) + tuple(x1.shape[2:]) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps >= 0).all()
    assert logits.shape == (1, 2) and np.isfinite(logits).all()
