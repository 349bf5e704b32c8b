"""CAM (Zhou et al.), Grad-CAM, Grad-CAM++, Layer-CAM and activation maps, for 2D and 3D networks.

One contract: ``explain(model, x, method, target=None, layer=None) -> np.ndarray`` — a float32 *raw* map per
input on the input's own grid (``N×C×H×W -> N×H×W``; ``N×C×D×H×W -> N×D×H×W``), bilinear / trilinear
up-sampling with the spatial axes kept in tensor order (never transposed).  ``normalise_map`` min-max scales
for display.  The target layer and classifier come from the model's registry config (``cam_layer``,
``classifier``) unless given.

Definitions (A = target-layer activations N×K×spatial, G = ∂y_c/∂A, y_c the class *logit*):

* ``cam``       M_c = Σ_k w_ck A_k + b_c, with w the rows of the linear (or 1×1 conv) classifier that follows
                global average pooling; for GAP→Linear heads the spatial mean of M_c equals the logit.
* ``gradcam``   α_k = mean_spatial(G_k);            M = ReLU(Σ_k α_k A_k)          (Selvaraju et al.)
* ``gradcampp`` α_k = Σ_ij a_ij ReLU(G_k,ij), a = G²/(2G² + Σ_ij A·G³)   (Chattopadhay et al., exp-score form)
* ``layercam``  M = ReLU(Σ_k ReLU(G_k) ⊙ A_k)                                       (Jiang et al.)
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

METHODS = ("cam", "gradcam", "gradcampp", "layercam")


class ExplainError(ValueError):
    """An explainer cannot be applied as asked (wrong input rank, no CAM-compatible head, unknown layer)."""


# -------------------------------------------------------------------------------------------- layer lookup
def _config(model: nn.Module) -> Any:
    return getattr(model, "model_config", None)


def cam_target(model: nn.Module) -> tuple[str, str]:
    """(cam_layer, classifier) dotted paths for ``model``: per-instance override, else the registry config."""
    override = getattr(model, "cam_override", None)
    if override:
        return str(override[0]), str(override[1])
    cfg = _config(model)
    if cfg is None:
        return "", ""
    return cfg.cam_layer, cfg.classifier


def get_layer(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise ExplainError(f"model has no layer {name!r}; list candidates with engine.xai.list_layers(model)") \
            from exc


def _as_input(x: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.ndim not in (4, 5):
        raise ExplainError(f"explainers take a batch N×C×H×W (2D) or N×C×D×H×W (3D); got shape "
                           f"{tuple(t.shape)} — add the batch/channel axes (x[None, None])")
    return t.detach().to(torch.float32)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


class _Capture:
    """Forward hook keeping a layer's output intact (later in-place ops act on a clone) and its gradient."""

    def __init__(self, layer: nn.Module, need_grad: bool):
        self.need_grad = need_grad
        self.activation: torch.Tensor | None = None
        self.gradient: torch.Tensor | None = None
        self.handle = layer.register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> Any:
        if isinstance(output, (tuple, list)):
            output = output[0]
        self.activation = output
        if self.need_grad and output.requires_grad:
            output.register_hook(self._grad_hook)
        return output.clone()

    def _grad_hook(self, grad: torch.Tensor) -> None:
        self.gradient = grad

    def remove(self) -> None:
        self.handle.remove()


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values())))
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ExplainError(f"model output must be N×classes logits, got {getattr(out, 'shape', type(out))}")
    return out


def _targets(logits: torch.Tensor, target: Any) -> torch.Tensor:
    n, k = logits.shape
    if target is None:
        idx = logits.argmax(1)
    elif isinstance(target, (int, np.integer)):
        idx = torch.full((n,), int(target), dtype=torch.long)
    else:
        idx = torch.as_tensor(np.asarray(target), dtype=torch.long).reshape(-1)
        if idx.numel() == 1:
            idx = idx.expand(n)
        if idx.numel() != n:
            raise ExplainError(f"{idx.numel()} targets for a batch of {n}")
    if (idx < 0).any() or (idx >= k).any():
        raise ExplainError(f"target class out of range 0..{k - 1}: {idx.tolist()}")
    return idx.to(logits.device)


def upsample_map(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """N×(d×)h×w maps -> N×size, bilinear (2D) / trilinear (3D), axes in tensor order, align_corners=False."""
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return maps
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(maps[:, None], size=size, mode=mode, align_corners=False)[:, 0]


def _classifier_weights(model: nn.Module, classifier: str, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    head = get_layer(model, classifier)
    if isinstance(head, nn.Linear):
        w, b = head.weight, head.bias
    elif isinstance(head, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and all(k == 1 for k in head.kernel_size) \
            and head.groups == 1:
        w, b = head.weight.flatten(1), head.bias
    else:
        raise ExplainError(f"CAM needs the classifier after global pooling to be a Linear or 1×1 conv; "
                           f"{classifier!r} is {type(head).__name__}. Use method='gradcam'")
    if w.shape[1] != channels:
        raise ExplainError(f"CAM needs global pooling -> {classifier!r} directly: the layer has {channels} "
                           f"channels but the classifier takes {w.shape[1]} inputs. Use method='gradcam'")
    if b is None:
        b = torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
    return w.detach(), b.detach()


# ------------------------------------------------------------------------------------------------ explain
def explain(model: nn.Module, x: Any, method: str = "gradcam", target: Any = None, layer: str | None = None,
            *, classifier: str | None = None, upsample: bool = True,
            return_logits: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Class-activation map(s) of ``model`` for the batch ``x``, float32, raw (not normalised).

    ``target``: None = predicted class per item, an int, or one class per item.  ``layer`` / ``classifier``
    default to the registry's ``cam_layer`` / ``classifier``.  ``upsample=False`` returns the map on the layer's
    grid.  With ``return_logits`` the logits of the same forward pass come back too (one pass for prediction
    and heatmap).  The model's train/eval mode is restored afterwards; it runs in eval mode.
    """
    method = method.lower().replace("-", "").replace("_", "").replace("+", "p")
    aliases = {"gradcamplusplus": "gradcampp", "gradcampp": "gradcampp"}
    method = aliases.get(method, method)
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; choose one of {METHODS}")
    xt = _as_input(x)
    cfg_layer, cfg_classifier = cam_target(model)
    layer = layer or cfg_layer
    if not layer:
        layer = default_layer(model, xt[:1])
    module = get_layer(model, layer)
    need_grad = method != "cam"
    xt = xt.to(_device(model))

    with _eval_mode(model):
        cap = _Capture(module, need_grad)
        try:
            with torch.set_grad_enabled(need_grad):
                inp = xt.clone().requires_grad_(need_grad)
                logits = _logits(model(inp))
                idx = _targets(logits, target)
                if cap.activation is None:
                    raise ExplainError(f"layer {layer!r} was not used in the forward pass")
                acts = cap.activation
                if acts.ndim != xt.ndim:
                    raise ExplainError(f"layer {layer!r} outputs shape {tuple(acts.shape)}; a CAM layer must keep "
                                       f"the input's {xt.ndim - 2} spatial axes")
                if need_grad:
                    score = logits.gather(1, idx[:, None]).sum()
                    model.zero_grad(set_to_none=True)
                    score.backward()
                    grads = cap.gradient
                    if grads is None:
                        raise ExplainError(f"no gradient reached layer {layer!r}")
        finally:
            cap.remove()

        with torch.no_grad():
            a = acts.detach().float()
            spatial = tuple(range(2, a.ndim))
            if method == "cam":
                w, b = _classifier_weights(model, classifier or cfg_classifier, a.shape[1])
                wc = w[idx].float()                                            # N×K
                maps = torch.einsum("nk,nk...->n...", wc, a) + b[idx].float().view(-1, *([1] * (a.ndim - 2)))
            else:
                g = grads.detach().float()
                if method == "gradcam":
                    alpha = g.mean(dim=spatial, keepdim=True)
                    maps = F.relu((alpha * a).sum(1))
                elif method == "gradcampp":
                    g2, g3 = g.pow(2), g.pow(3)
                    sum_a = a.sum(dim=spatial, keepdim=True)
                    denom = 2 * g2 + sum_a * g3
                    aij = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
                    aij = torch.where(g != 0, aij, torch.zeros_like(aij))
                    weights = (aij * F.relu(g)).sum(dim=spatial, keepdim=True)
                    maps = F.relu((weights * a).sum(1))
                else:  # layercam
                    maps = F.relu((F.relu(g) * a).sum(1))
            if upsample:
                maps = upsample_map(maps, xt.shape[2:])
    out = maps.cpu().numpy().astype(np.float32, copy=False)
    if return_logits:
        return out, logits.detach().cpu().numpy().astype(np.float32)
    return out


def normalise_map(m: Any, *, per_item: bool = False, eps: float = 1e-8) -> np.ndarray:
    """Min-max scale to [0, 1] (a new array).  ``per_item`` scales each ``m[i]`` on its own (batches).
    A constant map becomes all zeros."""
    arr = np.asarray(m, dtype=np.float32)
    if per_item:
        return np.stack([normalise_map(a, eps=eps) for a in arr]) if arr.shape[0] else arr.copy()
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros_like(arr)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    out = np.where(finite, arr, lo) - lo
    return (out / (hi - lo) if hi - lo > eps else np.zeros_like(arr)).astype(np.float32)


# ------------------------------------------------------------------------------------- look-inside view
@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str                  # module class name
    shape: tuple[int, ...]     # output shape for the probe input (N×C×spatial)

    @property
    def channels(self) -> int:
        return self.shape[1]


def _probe_input(model: nn.Module) -> torch.Tensor:
    cfg = _config(model)
    size = tuple((cfg.test_input_size or cfg.input_size) if cfg is not None else (224, 224))
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    chans = int(first.in_channels) if first is not None else 1
    return torch.zeros((1, chans) + size, device=_device(model))


def list_layers(model: nn.Module, x: Any = None, *, leaves_only: bool = False) -> list[LayerInfo]:
    """Every named module whose output keeps the input's spatial axes (candidates for CAM or the per-filter
    activation view), in forward order, with its output shape for ``x`` (default: a zero probe at the
    config's test/native input size)."""
    xt = _as_input(x)[:1] if x is not None else _probe_input(model)
    xt = xt.to(_device(model))
    found: list[LayerInfo] = []
    handles = []

    def make(name: str):
        def hook(mod: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == xt.ndim:
                found.append(LayerInfo(name, type(mod).__name__, tuple(out.shape)))
        return hook

    for name, mod in model.named_modules():
        if not name or (leaves_only and any(True for _ in mod.children())):
            continue
        handles.append(mod.register_forward_hook(make(name)))
    try:
        with _eval_mode(model), torch.no_grad():
            model(xt)
    finally:
        for h in handles:
            h.remove()
    seen: set[str] = set()
    ordered = []
    for info in found:          # a module called twice (shared) is listed once
        if info.name not in seen:
            seen.add(info.name)
            ordered.append(info)
    return ordered


def default_layer(model: nn.Module, x: Any = None) -> str:
    """The last module (in forward order) with a spatial output of more than one voxel — the usual
    Grad-CAM layer when a model has no ``cam_layer`` configured."""
    layers = [l for l in list_layers(model, x) if int(np.prod(l.shape[2:])) > 1]
    if not layers:
        raise ExplainError("model has no layer with a spatial output; pass layer=")
    return layers[-1].name


def activation_maps(model: nn.Module, x: Any, layer: str | None = None, *, upsample: bool = False,
                    channels: Sequence[int] | None = None) -> np.ndarray:
    """Raw activations of ``layer`` for ``x``: N×K×(d×)h×w float32 (one map per filter).  ``upsample`` puts
    them on the input grid; ``channels`` selects filters.  Default layer: the CAM layer."""
    xt = _as_input(x).to(_device(model))
    layer = layer or cam_target(model)[0] or default_layer(model, xt[:1])
    module = get_layer(model, layer)
    cap = _Capture(module, need_grad=False)
    try:
        with _eval_mode(model), torch.no_grad():
            model(xt)
    finally:
        cap.remove()
    if cap.activation is None:
        raise ExplainError(f"layer {layer!r} was not used in the forward pass")
    a = cap.activation.detach().float()
    if a.ndim != xt.ndim:
        raise ExplainError(f"layer {layer!r} outputs shape {tuple(a.shape)}, not a spatial map")
    if channels is not None:
        a = a[:, list(channels)]
    if upsample:
        n, k = a.shape[:2]
        a = upsample_map(a.reshape(n * k, *a.shape[2:]), xt.shape[2:]).reshape(n, k, *xt.shape[2:])
    return a.cpu().numpy().astype(np.float32, copy=False)


def tile_maps(maps: Any, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """K×h×w per-filter maps -> one 2D mosaic (each tile min-max normalised), for the look-inside view."""
    arr = np.asarray(maps, dtype=np.float32)
    if arr.ndim != 3:
        raise ExplainError(f"tile_maps takes K×h×w maps, got {arr.shape}")
    k, h, w = arr.shape
    cols = columns or int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    mosaic = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad), dtype=np.float32)
    for i in range(k):
        r, c = divmod(i, cols)
        mosaic[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = normalise_map(arr[i])
    return mosaic
def heatmap_peak(heat: np.ndarray, region: np.ndarray | None = None,
                 spacing: Sequence[float] | None = None) -> tuple[int, ...]:
    """Index of the hottest element of ``heat`` (2-D or 3-D) inside ``region`` (default: everywhere).  Where the
    maximum is a plateau (an up-sampled coarse map is flat across half of every edge cell), the tied element
    nearest (in mm, ``spacing``; default 1 per axis) to the plateau's centre of mass — not the first one in
    memory order, which is always a plateau corner and, for a map carried out to a crop box, often outside the
    organ.  The pointing game of 2-D and 3-D localisation uses it."""
    heat = np.asarray(heat, dtype=np.float64)
    region = np.ones(heat.shape, dtype=bool) if region is None else np.asarray(region, dtype=bool)
    spacing = (1.0,) * heat.ndim if spacing is None else tuple(spacing)
    inside = np.where(region, heat, -np.inf)
    top = float(inside.max())
    if not np.isfinite(top):
        return tuple(int(v) for v in np.unravel_index(int(np.argmax(heat)), heat.shape))
    span = float(heat[region].max() - heat[region].min())
    tied = np.argwhere(inside >= top - 1e-6 * max(span, 1e-12))
    if len(tied) == 1:
        return tuple(int(v) for v in tied[0])
    mm = tied * np.asarray(spacing, dtype=np.float64)
    k = int(np.argmin(((mm - mm.mean(0)) ** 2).sum(1)))
    return tuple(int(v) for v in tied[k])


