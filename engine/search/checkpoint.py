"""Resumable checkpoints without pickle: tensors in one safetensors file, everything else as JSON metadata.

Used by the architecture search (supernet weights + α + two optimisers + RNG state) and by the 3-D trainer.
``load`` never unpickles (safetensors + json only), so pointing ``--resume`` at a foreign file cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

META_KEY = "lunglens_checkpoint"


def _optim_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}.{pid}.{key}"] = val.detach().clone().contiguous()
            else:
                scalars[f"{pid}.{key}"] = val
    return tensors, {"scalars": scalars, "param_groups": sd["param_groups"]}


def _load_optim(prefix: str, opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                meta: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith(prefix + "."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = val
    for name, val in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path: str | Path, model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer],
                    meta: Mapping[str, Any], extra_tensors: Mapping[str, torch.Tensor] | None = None) -> None:
    """Atomically write model state, optimiser states, ``extra_tensors`` (e.g. RNG states) and JSON ``meta``."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    opt_meta = {}
    for name, opt in optimizers.items():
        t, m = _optim_tensors(f"optim_{name}", opt)
        tensors.update(t)
        opt_meta[name] = m
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().clone().contiguous()
    payload = {"meta": dict(meta), "optimizers": opt_meta}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(payload)})
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer]
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore ``model`` and ``optimizers`` in place; return (meta, extra tensors)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            if META_KEY not in header:
                raise ValueError(f"{path} is not a LungLens checkpoint (no {META_KEY} metadata)")
            payload = json.loads(header[META_KEY])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}; delete it to start afresh") from exc
    except Exception as exc:  # safetensors' own parse error
        if isinstance(exc, ValueError):
            raise
        raise ValueError(f"{path} is not a safetensors checkpoint ({exc}); delete it to start afresh") from exc
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, opt in optimizers.items():
        _load_optim(f"optim_{name}", opt, tensors, payload["optimizers"][name])
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    return payload["meta"], extra


__all__ = ["save_checkpoint", "load_checkpoint"]
