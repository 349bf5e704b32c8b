"""Save / load model weights as ``model.safetensors`` + ``manifest.json`` (+ a human ``MODEL_CARD.md``).

Safety: a weights file is never unpickled.  ``load_weights`` reads the file's bytes once, checks their sha256
against the manifest, and parses them with safetensors (a plain tensor container).  PyTorch ``.pt``/``.pth``,
pickle, joblib or zip checkpoints are refused with a message that says how to convert them in a trusted place.

Layout of one weights folder::

    <dir>/manifest.json       model name, create kwargs, preprocess, classes, sha256, metrics, data, limits
    <dir>/model.safetensors   the state dict (float tensors + BN buffers)
    <dir>/MODEL_CARD.md       rendered from the manifest (informational; the manifest is authoritative)

Default (shipped) weights live in ``resources/weights/<model_name>/``; extra folders can be put in front of the
search path with ``LUNGLENS_WEIGHTS_PATH`` (``os.pathsep``-separated); ``LUNGLENS_BUNDLED_WEIGHTS=0`` leaves the
shipped folders out (benchmarks and tests that must see only the folders they name).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "MODEL_CARD.md"
FORMAT_VERSION = 1

# Extensions of formats that can execute code when loaded (pickle-based) — refused, never opened as weights.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".tar", ".npy", ".npz", ".h5",
                   ".hdf5", ".keras", ".zip")

DEFAULT_LIMITS = (
    "Research software, not a medical device: not cleared or approved for diagnosis. Outputs are screening "
    "suggestions for trained readers and must not be used as the sole basis of a clinical decision. "
    "Performance was measured only on the data named in this manifest and may not transfer to other scanners, "
    "protocols, populations or to CT without COVID-era pathology mix."
)


class WeightsError(ValueError):
    """A weights folder/file cannot be used; the message says what, which file, and what to do."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{message} [{path}]" if path is not None else message)


class WeightsNotFoundError(WeightsError, LookupError):
    """No (default) weights exist for a model."""


@dataclass
class LoadedModel:
    """A model in eval mode with the manifest it came from and its one preprocessing definition."""

    model: nn.Module
    manifest: dict[str, Any]
    preprocess: Any  # engine.preprocess.Preprocess
    path: Path

    @property
    def name(self) -> str:
        return str(self.manifest["model_name"])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def positive_index(self) -> int | None:
        pos = self.manifest.get("positive_class")
        return self.classes.index(pos) if pos in self.classes else None


# ---------------------------------------------------------------------------------------------------- helpers
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    """Tuples -> lists, numpy/torch scalars -> Python, Paths -> str, recursively (manifests are plain JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    return value


def guess_positive_class(classes: Sequence[str]) -> str | None:
    """The COVID class of a label list (``COVID``, ``COVID-19``, ``NCP``), not ``NonCOVID``/``non-COVID``."""
    for c in classes:
        low = c.lower().replace("-", "").replace("_", "").replace(" ", "")
        if ("covid" in low or low == "ncp") and not low.startswith(("non", "no")):
            return c
    return None


def _engine_version() -> str:
    try:
        from engine import __version__
        return str(__version__)
    except Exception:  # pragma: no cover - engine always importable here
        return "unknown"


def _refuse_pickle(path: Path) -> None:
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".tar" else path.suffix.lower()
    if path.suffix.lower() in PICKLE_SUFFIXES or suffix in PICKLE_SUFFIXES:
        raise WeightsError(
            f"refusing to load '{path.name}': {path.suffix} files are pickle-based checkpoints that can run "
            "arbitrary code when opened, and LungLens never unpickles files. Convert it once, in an "
            "environment you trust, to a LungLens weights folder: build the model with "
            "engine.models.create_model(...), load the checkpoint there, and call "
            "engine.weights.save_weights(model, out_dir, ...) — that writes model.safetensors + manifest.json",
            path)


def _sniff_not_safetensors(data: bytes, path: Path) -> None:
    """Reject pickle/zip payloads disguised with a .safetensors name before parsing."""
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        raise WeightsError(
            f"'{path.name}' is a PyTorch/pickle checkpoint renamed to .safetensors; LungLens never unpickles "
            "files. Convert it with engine.weights.save_weights in a trusted environment", path)
    if len(data) < 8:
        raise WeightsError(f"'{path.name}' is empty or truncated ({len(data)} bytes); re-download or re-export "
                           "the weights", path)
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or header_len > len(data) - 8 or data[8:9] != b"{":
        raise WeightsError(f"'{path.name}' is not a safetensors file (bad header); re-export the weights with "
                           "engine.weights.save_weights", path)


# ------------------------------------------------------------------------------------------------------- save
def save_weights(model: nn.Module, out_dir: str | Path, *, model_name: str,
                 create_kwargs: Mapping[str, Any] | None = None, preprocess: Any = None,
                 classes: Sequence[str], positive_class: str | None = None,
                 metrics: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
                 notes: str = "", licence: str = "Apache-2.0 (weights); see data licences for training data",
                 limits: str = DEFAULT_LIMITS, overwrite: bool = True) -> dict[str, Any]:
    """Write ``model.safetensors`` + ``manifest.json`` + ``MODEL_CARD.md`` into ``out_dir``; return the manifest.

    ``create_kwargs`` are the exact ``create_model`` arguments (``num_classes``, ``in_chans`` and any family
    options); ``preprocess`` is the model's ``engine.preprocess.Preprocess`` (or its dict); ``classes`` are the
    class names in output order.  ``metrics`` and ``data`` (provenance: dataset, split, patients, licence) are
    stored verbatim.
    """
    from safetensors.torch import save as st_save

    from engine.models.registry import model_config
    from engine.preprocess import Preprocess

    out = Path(out_dir)
    canonical = model_config(model_name).name  # validates the name, resolves aliases
    kwargs = dict(create_kwargs or {})
    classes = [str(c) for c in classes]
    kwargs.setdefault("num_classes", len(classes))
    if "in_chans" not in kwargs:
        first = next((m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
        kwargs["in_chans"] = int(first.in_channels) if first is not None else 1
    if int(kwargs["num_classes"]) != len(classes):
        raise WeightsError(f"{len(classes)} class names {classes} for a model with num_classes="
                           f"{kwargs['num_classes']}; give one name per output")
    if preprocess is None:
        preprocess = Preprocess.for_model(canonical, in_chans=int(kwargs["in_chans"]))
    pre_dict = preprocess.to_dict() if hasattr(preprocess, "to_dict") else dict(preprocess)
    if int(pre_dict.get("in_chans", kwargs["in_chans"])) != int(kwargs["in_chans"]):
        raise WeightsError(f"preprocess.in_chans={pre_dict.get('in_chans')} but the model takes "
                           f"in_chans={kwargs['in_chans']}; they must agree")
    if positive_class is None:
        positive_class = guess_positive_class(classes)
    elif positive_class not in classes:
        raise WeightsError(f"positive_class {positive_class!r} is not one of {classes}")

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    blob = st_save(state, metadata={"format": "pt", "model_name": canonical})
    digest = sha256_bytes(blob)

    out.mkdir(parents=True, exist_ok=True)
    target = out / WEIGHTS_NAME
    if target.exists() and not overwrite:
        raise WeightsError("weights already exist here; pass overwrite=True or choose another folder", target)
    tmp = target.with_suffix(".safetensors.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, target)

    n_params = sum(p.numel() for p in model.parameters())
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model_name": canonical,
        "create_kwargs": _jsonable(kwargs),
        "preprocess": _jsonable(pre_dict),
        "classes": classes,
        "positive_class": positive_class,
        "weights_file": WEIGHTS_NAME,
        "sha256": digest,
        "size_bytes": len(blob),
        "parameters": int(n_params),
        "metrics": _jsonable(dict(metrics or {})),
        "data": _jsonable(dict(data or {})),
        "licence": licence,
        "limits": limits,
        "notes": notes,
        "engine_version": _engine_version(),
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    (out / CARD_NAME).write_text(render_model_card(manifest), encoding="utf-8")
    return manifest


# ------------------------------------------------------------------------------------------------------- load
def _locate(path: str | Path) -> tuple[Path, Path]:
    """(manifest path, folder) for a folder, a manifest.json or a model.safetensors path."""
    p = Path(path)
    if not p.exists():
        raise WeightsNotFoundError("no such weights folder or file; check the path", p)
    if p.is_dir():
        manifest = p / MANIFEST_NAME
        if not manifest.is_file():
            stray = sorted(q.name for q in p.iterdir() if q.suffix.lower() in PICKLE_SUFFIXES)
            hint = f" (found {stray}: pickle checkpoints are not loaded)" if stray else ""
            raise WeightsNotFoundError(f"folder has no {MANIFEST_NAME}{hint}; a LungLens weights folder holds "
                                       f"{MANIFEST_NAME} + {WEIGHTS_NAME} written by save_weights", p)
        return manifest, p
    _refuse_pickle(p)
    if p.suffix.lower() == ".json":
        return p, p.parent
    if p.suffix.lower() == ".safetensors":
        manifest = p.parent / MANIFEST_NAME
        if not manifest.is_file():
            raise WeightsError(f"{p.name} has no {MANIFEST_NAME} next to it; without the manifest the model "
                               "name, classes and preprocessing are unknown", p)
        return manifest, p.parent
    raise WeightsError("not a weights folder, manifest.json or .safetensors file", p)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a weights folder (no weights read)."""
    manifest_path, _ = _locate(path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"manifest is not readable JSON ({exc}); re-export the weights", manifest_path) from exc
    if not isinstance(manifest, dict):
        raise WeightsError("manifest must be a JSON object", manifest_path)
    missing = [k for k in ("model_name", "create_kwargs", "classes", "sha256") if k not in manifest]
    if missing:
        raise WeightsError(f"manifest lacks {missing}; re-export the weights with save_weights", manifest_path)
    return manifest


def load_weights(path: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the model named in the manifest, verify the sha256 of its safetensors file, load, ``eval()``."""
    from safetensors.torch import load as st_load

    from engine.models.registry import create_model
    from engine.preprocess import Preprocess

    manifest_path, folder = _locate(path)
    manifest = read_manifest(manifest_path)
    weights_path = folder / str(manifest.get("weights_file", WEIGHTS_NAME))
    _refuse_pickle(weights_path)
    if not weights_path.is_file():
        raise WeightsNotFoundError(f"the manifest names {weights_path.name} but it is missing", weights_path)
    blob = weights_path.read_bytes()
    _sniff_not_safetensors(blob, weights_path)
    digest = sha256_bytes(blob)
    if digest != manifest["sha256"]:
        raise WeightsError(f"sha256 mismatch: file is {digest[:16]}…, manifest expects "
                           f"{str(manifest['sha256'])[:16]}…; the file is corrupted or was replaced — "
                           "re-download or re-export it", weights_path)
    try:
        state = st_load(blob)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise WeightsError(f"cannot parse safetensors file ({exc})", weights_path) from exc

    kwargs = dict(manifest["create_kwargs"])
    try:
        model = create_model(manifest["model_name"], **kwargs)
    except KeyError as exc:
        raise WeightsError(f"{exc.args[0]} — this engine version cannot build the model of these weights",
                           manifest_path) from exc
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise WeightsError(f"weights do not fit model {manifest['model_name']!r} with {kwargs}: {detail}",
                           weights_path) from exc
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"weights do not fit model {manifest['model_name']!r} with {kwargs}: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}", weights_path)
    model.to(device).eval()
    pre = manifest.get("preprocess")
    preprocess = Preprocess.from_dict(pre) if isinstance(pre, dict) else Preprocess.for_model(
        manifest["model_name"], in_chans=int(kwargs.get("in_chans", 1)))
    return LoadedModel(model=model, manifest=manifest, preprocess=preprocess, path=folder)


# --------------------------------------------------------------------------------------------- default weights
def weights_search_path() -> list[Path]:
    """Folders searched for ``<model_name>/manifest.json``: $LUNGLENS_WEIGHTS_PATH, then the bundled ones
    (unless ``LUNGLENS_BUNDLED_WEIGHTS=0``)."""
    dirs = [Path(p) for p in os.environ.get("LUNGLENS_WEIGHTS_PATH", "").split(os.pathsep) if p]
    if os.environ.get("LUNGLENS_BUNDLED_WEIGHTS", "1").strip().lower() not in ("0", "false", "no", "off"):
        here = Path(__file__).resolve()
        dirs.append(here.parents[2] / "resources" / "weights")   # source checkout / editable install
        dirs.append(here.parents[1] / "resources" / "weights")   # bundled inside the package (installers)
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def _canonical(name: str) -> str:
    try:
        from engine.models.registry import model_config
        return model_config(name).name
    except KeyError:
        return name


def find_default_weights(name: str) -> dict[str, Any] | None:
    """Manifest (plus ``"location"``) of the first weights folder for ``name`` on the search path, or None."""
    canonical = _canonical(name)
    for root in weights_search_path():
        folder = root / canonical
        if (folder / MANIFEST_NAME).is_file():
            try:
                manifest = read_manifest(folder)
            except WeightsError:
                continue
            manifest = dict(manifest)
            manifest["location"] = str(folder)
            return manifest
    return None


def load_default(name: str, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load the default weights of ``name``; raises ``WeightsNotFoundError`` naming the folders searched."""
    manifest = find_default_weights(name)
    if manifest is None:
        where = ", ".join(str(p) for p in weights_search_path())
        raise WeightsNotFoundError(f"no trained weights for model {name!r} (searched {where}); train some with "
                                   "`lunglens-engine train` or pick a model from list_weighted_models()")
    return load_weights(manifest["location"], device=device)


def list_weighted_models() -> list[str]:
    """Names of models that have default weights on the search path."""
    names: set[str] = set()
    for root in weights_search_path():
        if root.is_dir():
            names.update(d.name for d in root.iterdir() if (d / MANIFEST_NAME).is_file())
    return sorted(names)


# ------------------------------------------------------------------------------------------------- model card
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def render_model_card(manifest: Mapping[str, Any]) -> str:
    """A MODEL_CARD.md (Markdown) for a manifest: intended use, data, metrics, preprocessing, integrity."""
    m = dict(manifest)
    lines = [f"# Model card — {m.get('model_name', '?')}", ""]
    try:
        from engine.models.registry import model_config
        cfg = model_config(str(m.get("model_name")))
        lines += [f"{cfg.description}", "", f"Paper: {cfg.paper}", ""]
    except KeyError:
        pass
    lines += [
        "## Intended use and limits", "",
        "Screening aid for chest CT: the model suggests whether a slice or scan shows COVID-19 pneumonia and "
        "shows where it looked (CAM / Grad-CAM).", "",
        str(m.get("limits", DEFAULT_LIMITS)), "",
        "## Outputs", "",
        f"Classes (output order): {', '.join(m.get('classes', []))}; positive class: "
        f"{m.get('positive_class') or 'not set'}.", "",
        "## Training data", "",
    ]
    data = m.get("data") or {}
    if data:
        lines += [f"- **{k}**: {_fmt(v)}" for k, v in data.items()]
    else:
        lines.append("- not recorded")
    lines += ["", "## Metrics", ""]
    metrics = m.get("metrics") or {}
    flat = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    nested = {k: v for k, v in metrics.items() if isinstance(v, (dict, list))}
    if flat:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]
    for k, v in nested.items():
        lines.append(f"- **{k}**: {_fmt(v)}")
    if not metrics:
        lines.append("not recorded")
    pre = m.get("preprocess") or {}
    lines += ["", "## Preprocessing", ""]
    for key in ("spatial_dims", "input_size", "in_chans", "hu_window", "mean", "std", "lung_crop",
                "target_spacing"):
        if key in pre:
            lines.append(f"- {key}: {_fmt(pre[key])}")
    lines += ["", "## Model", "",
              f"- create kwargs: `{json.dumps(m.get('create_kwargs', {}))}`",
              f"- parameters: {m.get('parameters', '?'):,}" if isinstance(m.get("parameters"), int)
              else f"- parameters: {m.get('parameters', '?')}",
              f"- engine {m.get('engine_version', '?')}, torch {m.get('torch_version', '?')}, "
              f"created {m.get('created', '?')}",
              "", "## Integrity and licence", "",
              f"- file: {m.get('weights_file', WEIGHTS_NAME)} ({m.get('size_bytes', '?')} bytes), "
              f"sha256 `{m.get('sha256', '?')}`",
              f"- licence: {m.get('licence', '?')}"]
    if m.get("notes"):
        lines += ["", "## Notes", "", str(m["notes"])]
    return "\n".join(lines) + "\n"
