"""``lunglens-engine models``: every registered network with its size, compute and paper.

Counts refer to the paper's configuration (``paper_in_chans`` input channels, ``paper_num_classes`` outputs) at
the native input size, so they can be compared with the spec; ``--in-chans``/``--num-classes`` override it.
Models are built uninitialised (no random init) and MACs are counted without executing the conv/linear
arithmetic (``engine.bench.macs``), so the whole table takes seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'efficientnet_*'")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--dims", type=int, choices=(2, 3), default=None, help="only 2D or only 3D models")
    parser.add_argument("--in-chans", type=int, default=None, help="input channels (default: the paper's)")
    parser.add_argument("--num-classes", type=int, default=None, help="outputs (default: the paper's)")
    parser.add_argument("--no-macs", action="store_true", help="skip the MAC count (parameters only)")


_INIT_FUNCS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
               "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
               "sparse_")


def _no_init(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


@contextmanager
def _skip_init() -> Iterator[None]:
    """Make torch.nn.init a no-op while building a model that is only counted: random initialisation is slow
    (on ``meta`` it is routed through Python decompositions; on the CPU it touches every weight page) and MAC
    counting never reads conv/linear weights.  Denormals are flushed so uninitialised BN affine values cannot
    slow the elementwise ops that do run."""
    saved = {n: getattr(torch.nn.init, n) for n in _INIT_FUNCS if hasattr(torch.nn.init, n)}
    try:
        for n in saved:
            setattr(torch.nn.init, n, _no_init)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def build_meta(name: str, in_chans: int, num_classes: int, **cfg: Any) -> torch.nn.Module:
    """A registered model on the ``meta`` device (no storage, no initialisation) — for counting only."""
    from engine.models import create_model

    with _skip_init(), torch.device("meta"):
        return create_model(name, num_classes=num_classes, in_chans=in_chans, **cfg)


def build_for_counting(name: str, in_chans: int, num_classes: int, *, prefer_meta: bool = False,
                       **cfg: Any) -> tuple[torch.nn.Module, str]:
    """Zero-initialised model for parameter/MAC counting: CPU tensors by default (MAC counting does not run
    the conv/linear arithmetic, and CPU kernels beat PyTorch's Python-level meta kernels for the rest);
    ``prefer_meta`` builds on the ``meta`` device instead (no memory at all)."""
    from engine.models import create_model, model_config

    config = model_config(name)
    if prefer_meta:
        try:
            return build_meta(name, in_chans, num_classes, **cfg), "meta"
        except Exception:  # noqa: BLE001 - data-dependent constructor: fall back to real tensors
            pass
    with _skip_init():
        return create_model(name, num_classes=num_classes, in_chans=in_chans, **cfg), "cpu"


def describe(name: str, *, in_chans: int | None = None, num_classes: int | None = None,
             macs: bool = True) -> dict[str, Any]:
    """One table row as a dict (also used by the benchmark and the viewer's model picker)."""
    from engine.bench.macs import count_macs, count_params
    from engine.models import model_config

    cfg = model_config(name)
    c = cfg.paper_in_chans if in_chans is None else in_chans
    k = cfg.paper_num_classes if num_classes is None else num_classes
    row: dict[str, Any] = {
        "name": cfg.name, "family": cfg.family, "paper": cfg.paper.split(" ")[0], "paper_ref": cfg.paper,
        "spatial_dims": cfg.spatial_dims, "input_size": list(cfg.input_size), "in_chans": c, "num_classes": k,
        "cam_kind": cfg.cam_kind, "cam_layer": cfg.cam_layer, "giant": cfg.giant, "aliases": list(cfg.aliases),
    }
    model, device = build_for_counting(cfg.name, c, k)
    pc = count_params(model)
    row.update(params=pc.trainable, params_keras=pc.keras_style)
    expected = cfg.expected_params.get(f"in{c}_cls{k}")
    row["spec_params"] = expected
    row["matches_spec"] = None if expected is None else expected == pc.trainable
    row["gmacs"] = None
    if macs:
        shape = (1, c, *cfg.input_size)
        try:
            row["gmacs"] = count_macs(model, shape) / 1e9
        except Exception:  # noqa: BLE001 - an op without a meta kernel: count on the CPU
            if device != "meta":
                raise
            with _skip_init():
                model = create_model_cpu(cfg.name, c, k)
            row["gmacs"] = count_macs(model, shape) / 1e9
    try:
        from engine.weights import find_default_weights
        row["weights"] = find_default_weights(cfg.name) is not None
    except Exception:  # noqa: BLE001 - weights are optional for the table
        row["weights"] = False
    return row


def create_model_cpu(name: str, in_chans: int, num_classes: int) -> torch.nn.Module:
    from engine.models import create_model
    return create_model(name, num_classes=num_classes, in_chans=in_chans)


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("model", "paper", "input", "params", "Keras-style", "spec", "GMACs", "CAM", "weights")
    lines = []
    for r in rows:
        size = "×".join(str(s) for s in [r["in_chans"], *r["input_size"]])
        gm = "-" if r["gmacs"] is None else f"{r['gmacs']:.3f}"
        lines.append((r["name"] + (" *" if r["giant"] else ""), r["paper"], f"{size} →{r['num_classes']}",
                      f"{r['params']:,}", f"{r['params_keras']:,}",
                      {True: "=", False: "≠", None: ""}[r["matches_spec"]], gm, r["cam_kind"],
                      "yes" if r.get("weights") else ""))
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
    right = {3, 4, 6}
    fmt = lambda cells: "  ".join(c.rjust(w) if i in right else c.ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    out = [fmt(head), fmt(tuple("-" * w for w in widths))] + [fmt(l) for l in lines]
    out.append("")
    out.append("params = trainable at the paper's input channels / classes; Keras-style adds BatchNorm moving "
               "statistics; spec = / ≠: trainable count equals / differs from the spec's reproduced value (blank: none); "
               "GMACs at the native input (batch 1); * = giant (skipped by the default smoke run).")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from engine.models import list_models

    names = list_models(args.pattern, spatial_dims=args.dims)
    if not names:
        print(f"no registered model matches {args.pattern!r}", file=sys.stderr)
        return 1
    rows = []
    torch.set_flush_denormal(True)
    for name in names:
        try:
            rows.append(describe(name, in_chans=args.in_chans, num_classes=args.num_classes,
                                 macs=not args.no_macs))
        except Exception as exc:  # noqa: BLE001 - one broken family must not hide the others
            print(f"{name}: cannot be built ({type(exc).__name__}: {exc})", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows))
    return 0 if len(rows) == len(names) else 1
