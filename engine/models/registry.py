"""Model registry (timm-style): ``@register_model`` + ``create_model(name)`` / ``list_models()`` / ``model_card()``.

Every network of the five papers registers a factory ``fn(num_classes=2, in_chans=1, **cfg) -> nn.Module``
together with a ``ModelConfig``: the paper's native input, the CAM target layer and classifier, the
preprocessing defaults (HU window, normalisation) and the parameter counts the spec reproduces.  The viewer,
training, batch screening and the benchmark all read these configs; nothing else hard-codes a model's input.
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import torch.nn as nn

# Family modules that register models on import.  Listed explicitly (no import-time magic over the package)
# so a newcomer sees every family here; each module is one paper / family.
FAMILY_MODULES = (
    "engine.models.squeezenet",      # P0: squeezenet1_0/1_1, lightsqueeze_{plain,bypass,proposed}
    "engine.models.spp_covid_net",   # P2: spp_covid_net, darkcovid_net
    "engine.models.mobilenet",       # P2 benchmark: mobilenet_v1/v2/v3_small/v3_large
    "engine.models.shufflenet",      # P2 benchmark: shufflenet_v1
    "engine.models.covid_net",       # P3: covid_net (PEPX)
    "engine.models.efficientnet",    # P1: efficientnet_b0..b7
    "engine.models.resnet",          # P1: resnet50, resnet50v2, resnet101v2, resnet152v2
    "engine.models.densenet",        # P1: densenet121/169/201
    "engine.models.inception",       # P1: inception_v3, inception_resnet_v2, xception
    "engine.models.vgg",             # P1: vgg16, vgg19
    "engine.models.covidnet3d",      # P4: covidnet3d_s, covidnet3d_l (genotype-built)
    "engine.models.video3d",         # P4 baselines: mc3_18, resnet3d_101, densenet3d_121
)

LUNG_WINDOW = (-600.0, 1500.0)  # (level, width) HU


@dataclass(frozen=True)
class ModelConfig:
    """Everything outside the weights that defines how a model is used.

    ``input_size`` is the paper's native input *without* channels: (H, W) for 2D, (D, H, W) for 3D.
    ``cam_layer`` is the dotted module path whose output feeds global pooling (CAM / Grad-CAM target);
    ``classifier`` the dotted path of the final Linear (or 1x1 conv) used by CAM.
    ``mean``/``std`` apply to inputs already scaled to [0, 1] (8-bit / 255 or windowed HU).
    """

    name: str
    family: str
    paper: str                                     # "P0".."P4" (see shared/spec)
    spatial_dims: int = 2
    input_size: tuple[int, ...] = (224, 224)
    paper_in_chans: int = 3                        # configuration the paper's parameter counts refer to
    paper_num_classes: int = 2
    cam_layer: str = ""
    classifier: str = ""
    cam_kind: str = "gradcam"                      # "cam" when GAP -> linear allows Zhou et al. CAM
    hu_window: tuple[float, float] = LUNG_WINDOW   # (level, width) applied to HU inputs
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    test_input_size: tuple[int, ...] | None = None  # reduced input for CI smoke tests
    giant: bool = False                            # too big for the default smoke run
    expected_params: dict[str, int] = field(default_factory=dict)  # "in3_cls3" -> trainable params
    description: str = ""
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Entry:
    fn: Callable[..., nn.Module]
    config: ModelConfig


_REGISTRY: dict[str, _Entry] = {}
_ALIASES: dict[str, str] = {}
_loaded = False


def register_model(config: ModelConfig) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``fn`` under ``config.name`` (and its aliases)."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if config.name in _REGISTRY:
            raise ValueError(f"model {config.name!r} registered twice")
        _REGISTRY[config.name] = _Entry(fn, config)
        for alias in config.aliases:
            _ALIASES[alias] = config.name
        fn.default_config = config  # type: ignore[attr-defined]
        return fn

    return decorator


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in FAMILY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # A family not written yet is simply absent; any other missing import is a real bug.
            if exc.name != module:
                raise


def _resolve(name: str) -> str:
    _ensure_loaded()
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        close = fnmatch.filter(_REGISTRY, f"*{name.split('_')[0]}*")[:5]
        hint = f" Did you mean one of {close}?" if close else ""
        raise KeyError(f"unknown model {name!r}.{hint} See `lunglens-engine models` for all names.")
    return name


def list_models(pattern: str | None = None, *, spatial_dims: int | None = None,
                include_giant: bool = True) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell-style wildcard (``'efficientnet_*'``)."""
    _ensure_loaded()
    names = sorted(_REGISTRY)
    if pattern:
        names = fnmatch.filter(names, pattern)
    if spatial_dims is not None:
        names = [n for n in names if _REGISTRY[n].config.spatial_dims == spatial_dims]
    if not include_giant:
        names = [n for n in names if not _REGISTRY[n].config.giant]
    return names


def model_config(name: str) -> ModelConfig:
    """The registered default config of ``name`` (aliases accepted)."""
    return _REGISTRY[_resolve(name)].config


def model_card(name: str) -> dict[str, Any]:
    """Config plus, if shipped weights exist, their manifest (data provenance, metrics, limits)."""
    config = model_config(name)
    card: dict[str, Any] = {"config": config.to_dict(), "weights": None}
    try:
        from engine.weights import find_default_weights  # optional until weights ship
    except ImportError:
        return card
    manifest = find_default_weights(config.name)
    if manifest is not None:
        card["weights"] = manifest
    return card


def create_model(name: str, num_classes: int = 2, in_chans: int = 1, **cfg: Any) -> nn.Module:
    """Build a registered network (random init).  ``cfg`` are family-specific options (e.g. ``genotype=``)."""
    entry = _REGISTRY[_resolve(name)]
    model = entry.fn(num_classes=num_classes, in_chans=in_chans, **cfg)
    # Keep the config on the instance so explainers / preprocessing find the CAM layer without the name.
    model.model_config = replace(entry.config)  # type: ignore[attr-defined]
    return model
