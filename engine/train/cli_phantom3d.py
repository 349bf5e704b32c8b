"""Train, evaluate and (optionally) ship a 3-D network on in-memory synthetic phantoms (``engine.train.phantom3d``).

    python -m engine.train.cli_phantom3d --out runs/phantom3d --n-train 480 --n-val 80 --n-test 120 \\
        --input-size 24,64,64 --z-mm 12 --epochs 16 --threads 1 [--ship resources/weights/covidnet3d_s]

The shipped covidnet3d_s (v3: the genotype ``lunglens-engine search --phantom3d 480 ... --cost-weight 0.25`` found;
~14 min on one CPU thread, its manifest holds the exact command):

    python -m engine.train.cli_phantom3d --out runs/phantom3d \\
        --genotype resources/genotypes/covidnet3d_s_phantom3d_dnas_cost025.json --strides 2,1x2x2,1,1,1,1 \\
        --aux-weight 1.0 --epochs 14 --threads 1 --ship resources/weights/covidnet3d_s

``--genotype light`` (``LIGHT_GENOTYPE``, v2): the hand-picked alternative, one 3×3×3 MBConv3 in cells 0, 3, 4, two
in cells 1, 2, skips elsewhere (1.06 M parameters).  With those strides the CAM grid is 8×8×8 for a 32×64×64 input;
few MBConv blocks on that grid keep the receptive field local enough for the CAM to follow the lesions.

Train / validation / test cases come from three different set seeds (``seed``, ``seed+1``, ``seed+2``), so the
sets are disjoint by construction.  Every case goes through the model's one ``Preprocess`` (``volume_tensor``,
evaluation-mode slice sampling); training adds left-right flips and small in-plane shifts on those tensors.  The
kept weights are those of the best validation epoch (AUC, then loss); the test set is used once, at the end, for
the reported accuracy / AUC and for 3-D CAM localisation against the exact lesion masks (on the source voxels).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


LIGHT_GENOTYPE: list[str] = (["3x3x3_MBConv3", "skip", "skip", "skip"]
                              + ["3x3x3_MBConv3", "3x3x3_MBConv3", "skip", "skip"] * 2
                              + ["3x3x3_MBConv3", "skip", "skip", "skip"] * 2 + ["skip"])


def build_preprocess(model: str, input_size: tuple[int, int, int], z_mm: float, crop_scale: float = 1.0):
    from engine.preprocess import Preprocess

    # crop_scale 1.0: the whole (square) lung box is kept — the P4 default 1.25 centre crop cuts the peripheral
    # lung, exactly where COVID-like lesions sit.
    return Preprocess.for_model(model, input_size=tuple(input_size), lung_crop=True,
                                target_spacing=(float(z_mm), 0.0, 0.0), extra={"crop_scale": float(crop_scale)})


def mask_on_model_grid(pre: Any, mask: np.ndarray, spacing: Any, geometry: Any) -> torch.Tensor:
    """A (z, y, x) lesion mask carried through the *same* forward path as its volume (z-resampling, slice
    sampling, box, resize): D×H×W lesion fraction in [0, 1].  The mask is coded as HU (-1000 / 0), which the
    lung window maps linearly, so the fraction is recovered exactly."""
    from engine.preprocess.volume3d import unit_volume

    hu = np.where(np.asarray(mask) > 0, 0.0, -1000.0).astype(np.float32)
    u, _ = unit_volume(pre, hu, spacing, is_hu=True, crop_box=geometry.crop_box)
    lo = pre.to_unit(np.float32(-1000.0), True)
    hi = pre.to_unit(np.float32(0.0), True)
    return ((u[0, 0] - lo) / (hi - lo)).clamp(0, 1)


def tensors_for(pre: Any, set_seed: int, n: int, params: dict[str, Any] | None = None,
                log=print) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
    from engine.preprocess.volume3d import volume_tensor
    from engine.train.phantom3d import make_case

    xs, ys, ms, infos = [], [], [], []
    t0 = time.time()
    for i in range(n):
        c = make_case(set_seed, i, params)
        x, geom = volume_tensor(pre, c.volume)
        xs.append(x[0])
        ys.append(c.label)
        ms.append(mask_on_model_grid(pre, c.lesion_mask, c.volume.spacing, geom).to(torch.float16))
        infos.append(c.info)
        if (i + 1) % 50 == 0:
            log(f"  set {set_seed}: {i + 1}/{n} cases ({time.time() - t0:.0f} s)")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long), torch.stack(ms), infos


def cache_stem(cache: Path, pre: Any, set_seed: int, n: int, params: dict[str, Any] | None) -> Path:
    """``cache/set<seed>_n<n>_<key>`` (+ ``.pt`` tensors, ``.json`` case infos): the key hashes everything the
    tensors depend on (preprocessing, set seed, size, generator parameters)."""
    import hashlib

    key = hashlib.sha256(json.dumps([pre.to_dict(), set_seed, n, params or {}], sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    return cache / f"set{set_seed}_n{n}_{key}"


def cached_tensors(cache: Path | None, pre: Any, set_seed: int, n: int, params: dict[str, Any] | None, log=print):
    stem = cache_stem(cache, pre, set_seed, n, params) if cache is not None else None
    if stem is not None and stem.with_suffix(".pt").is_file():
        from safetensors.torch import load_file
        d = load_file(str(stem.with_suffix(".pt")))
        infos = json.loads(stem.with_suffix(".json").read_text())
        return d["x"], d["y"], d["m"], infos
    x, y, m, infos = tensors_for(pre, set_seed, n, params, log)
    if stem is not None:
        from safetensors.torch import save_file
        stem.parent.mkdir(parents=True, exist_ok=True)
        save_file({"x": x.contiguous(), "y": y, "m": m.contiguous()}, str(stem.with_suffix(".pt")))
        stem.with_suffix(".json").write_text(json.dumps(infos))
    return x, y, m, infos


def augment(x: torch.Tensor, m: torch.Tensor, g: torch.Generator, shift: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-right flip (p = 0.5 per item) and an in-plane shift of up to ``shift`` voxels (edge-replicated),
    applied alike to the inputs (N×C×D×H×W) and their lesion masks (N×D×H×W)."""
    out, mo = x.clone(), m.clone()
    flip = torch.rand(len(x), generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    mo[flip] = mo[flip].flip(-1)
    if shift:
        pad = F.pad(out, (shift, shift, shift, shift, 0, 0), mode="replicate")
        padm = F.pad(mo[:, None], (shift, shift, shift, shift, 0, 0), mode="replicate")[:, 0]
        H, W = x.shape[-2:]
        for k in range(len(x)):
            dy, dx = (int(v) for v in torch.randint(0, 2 * shift + 1, (2,), generator=g))
            out[k] = pad[k, :, :, dy:dy + H, dx:dx + W]
            mo[k] = padm[k, :, dy:dy + H, dx:dx + W]
    return out, mo


def genotype_origin(genotype: str | None) -> str:
    """Where a ``--genotype`` came from, for the model card: hand-picked, or the search file's own record."""
    if not genotype:
        return "the spec's representative genotype"
    if genotype == "light":
        return "hand-picked LIGHT_GENOTYPE"
    path = Path(genotype)
    if path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            doc = None
        if isinstance(doc, dict):
            cmd = doc.get("search", {}).get("command") if isinstance(doc.get("search"), dict) else None
            return f"from {path.name}: {doc.get('source', 'genotype file')}" + (f"; search: {cmd}" if cmd else "")
        return f"from {path.name}"
    return "given on the command line"


def class_maps(model: torch.nn.Module, x: torch.Tensor, *forward_args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, per-position class scores N×K×d×h×w) in one pass: the classifier applied at every position of
    the CAM layer (``feature_mix``), i.e. the CAM before normalisation; GAP of it (+ dropout) gives the logits.
    ``forward_args`` go to ``model(x, ...)`` (the search's supernet takes its sampled path there)."""
    feats = []
    h = model.feature_mix.register_forward_hook(lambda mod, i, o: feats.append(o))
    try:
        logits = model(x, *forward_args)
    finally:
        h.remove()
    w, b = model.classifier.weight, model.classifier.bias
    maps = torch.einsum("kc,ncdhw->nkdhw", w, feats[0]) + b.view(1, -1, 1, 1, 1)
    return logits, maps


def cam_targets(mask: torch.Tensor, grid: tuple[int, ...], min_share: float = 0.05) -> torch.Tensor:
    """The auxiliary loss's per-cell target: 1 where a CAM cell's share of lesion (N×D×H×W masks on the model
    grid -> their mean over each cell of the N×d×h×w CAM grid) exceeds ``min_share``.  Cell (i, j, k) covers the
    model voxels ``[i·D/d, (i+1)·D/d)`` × ..., the frame ``engine.xai.upsample_map`` (trilinear,
    ``align_corners=False``) puts it back in."""
    return (F.adaptive_avg_pool3d(mask[:, None].float(), tuple(grid))[:, 0] > min_share).float()


def aux_logits(maps: torch.Tensor, aux_map: str = "cam", target: int = 1) -> torch.Tensor:
    """The per-cell map the auxiliary lesion loss trains, N×d×h×w logits.

    ``cam`` (default): the positive class's own CAM, ``Σ_k w_ck A_k + b_c`` — exactly the map ``engine.xai.explain``
    (method ``cam``, target = COVID), the viewer and the localisation metrics show.  ``diff``: COVID minus
    NonCOVID (what covidnet3d_s v1 trained): that is *not* the map anyone looks at, and since its cell mean is
    the decision logit, a per-cell BCE on it pulls positives with a few % involvement towards NonCOVID."""
    if aux_map == "cam":
        return maps[:, target]
    if aux_map == "diff":
        return maps[:, target] - maps[:, 1 - target]
    raise ValueError(f"aux_map must be 'cam' or 'diff', got {aux_map!r}")


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, bs: int = 8) -> np.ndarray:
    model.eval()
    return torch.cat([F.softmax(model(x[s:s + bs]), 1) for s in range(0, len(x), bs)]).numpy()


@torch.no_grad()
def precise_bn(model: torch.nn.Module, x: torch.Tensor, bs: int, batches: int = 16) -> None:
    from engine.train.train3d import recalibrate_bn

    class _D:
        def batch(self, ind, epoch=0, train=True):
            return x[list(ind)], None

    n = min(len(x), batches * bs)
    recalibrate_bn(model, _D(), list(range(n)), bs)


def localise(model: torch.nn.Module, pre: Any, set_seed: int, indices: list[int], params: dict[str, Any] | None,
             target: int = 1) -> dict[str, Any]:
    from engine.preprocess import Preprocess
    from engine.preprocess.volume3d import volume_tensor
    from engine.train.phantom3d import make_case
    from engine.train.train3d import localisation_scores
    from engine.xai import explain

    cases = []
    for i in indices:
        c = make_case(set_seed, i, params)
        if not c.label:
            continue
        x, geom = volume_tensor(pre, c.volume)
        cam = explain(model, x, "cam", target=target)[0]
        cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-8)
        heat = Preprocess.to_voxels(cam, geom)
        s = localisation_scores(heat, c.lesion_mask.astype(bool), c.volume.spacing, c.lung_mask.astype(bool))
        s.update(case=i, involvement=c.info["involvement"])
        cases.append(s)
    def mean(k):
        v = [float(c[k]) for c in cases if not (isinstance(c[k], float) and math.isnan(c[k]))]
        return float(np.mean(v)) if v else float("nan")
    return {"n": len(cases), "method": "cam", "pointing_game": mean("pointing_hit"),
            "pointing_game_tol15mm": mean("pointing_hit_tol"), "energy_in_mask": mean("energy_in_mask"),
            "energy_chance": mean("energy_chance"), "lesion_vs_lung_auc": mean("lesion_auc"),
            "median_peak_distance_mm": float(np.median([c["peak_distance_mm"] for c in cases])) if cases else
            float("nan"), "cases": cases}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.train.cli_phantom3d", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="covidnet3d_s")
    p.add_argument("--genotype", default=None,
                   help="genotype JSON file/text, or 'light' (LIGHT_GENOTYPE; default: the representative genotype)")
    p.add_argument("--seed", type=int, default=3000, help="train set seed (val: +1, test: +2)")
    p.add_argument("--n-train", type=int, default=480)
    p.add_argument("--n-val", type=int, default=80)
    p.add_argument("--n-test", type=int, default=120)
    p.add_argument("--input-size", default="32,64,64")
    p.add_argument("--z-mm", type=float, default=8.0, help="common slice spacing before slice sampling")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop training after this many minutes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=None, help="folder for cached input tensors")
    p.add_argument("--out", required=True)
    p.add_argument("--data-only", action="store_true", help="only build (and cache) the input tensors")
    p.add_argument("--only-set", choices=["train", "val", "test"], default=None,
                   help="only build (and cache) this set's tensors, then exit")
    p.add_argument("--strides", default="2,2,1x2x2,1,1,1",
                   help="CovidNet3D cell strides (macro override for a finer CAM grid; 'paper' = 2,2,2,1,2,1)")
    p.add_argument("--aux-weight", type=float, default=0.5,
                   help="weight of the auxiliary lesion-mask loss on the CAM (0 = image labels only)")
    p.add_argument("--aux-pos-weight", type=float, default=1.0,
                   help="weight of lesion cells in the auxiliary loss (they are a few %% of all cells)")
    p.add_argument("--aux-map", choices=["cam", "diff"], default="cam",
                   help="map the auxiliary loss trains: 'cam' = the COVID CAM that explain()/the viewer show "
                        "(default); 'diff' = COVID minus NonCOVID (covidnet3d_s v1)")
    p.add_argument("--ship", default=None, help="also write shipped weights (safetensors + manifest + card) here")
    args = p.parse_args(argv)
    if not args.data_only and not args.only_set:
        if args.n_train < args.batch_size:
            p.error(f"--n-train {args.n_train} is smaller than --batch-size {args.batch_size}: no full training "
                    "batch (give more training cases or a smaller batch)")
        if args.n_val < 1 or args.n_test < 1:
            p.error("--n-val and --n-test need at least one case each (model selection and the test report)")
        if args.epochs < 1:
            p.error("--epochs must be at least 1")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "log.txt", "a", encoding="utf-8")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    from engine.models import create_model
    from engine.train.metrics import classification_metrics
    from engine.train.phantom3d import MODERATE_SET

    size = tuple(int(v) for v in args.input_size.split(","))
    pre = build_preprocess(args.model, size, args.z_mm)
    cache = Path(args.cache) if args.cache else None
    t0 = time.time()
    sets = {"train": (args.seed, args.n_train), "val": (args.seed + 1, args.n_val),
            "test": (args.seed + 2, args.n_test)}
    if args.only_set:
        cached_tensors(cache, pre, *sets[args.only_set], None, log)
        return 0
    Xt, Yt, Mt, It = cached_tensors(cache, pre, *sets["train"], None, log)
    Xv, Yv, _, Iv = cached_tensors(cache, pre, *sets["val"], None, log)
    Xs, Ys, _, Is = cached_tensors(cache, pre, *sets["test"], None, log)
    data_s = time.time() - t0
    log(f"data: train {tuple(Xt.shape)} ({int(Yt.sum())} pos), val {len(Xv)} ({int(Yv.sum())} pos), "
        f"test {len(Xs)} ({int(Ys.sum())} pos) in {data_s:.0f} s")
    if args.data_only:
        return 0

    genotype = args.genotype
    create_kwargs: dict[str, Any] = {"num_classes": 2, "in_chans": 1, "dropout": args.dropout}
    from engine.search.cli import parse_strides

    macro = parse_strides(args.strides)
    if macro is not None:
        create_kwargs["macro"] = macro
    if genotype:
        from engine.models.covidnet3d import load_genotype
        create_kwargs["genotype"] = load_genotype(LIGHT_GENOTYPE if genotype == "light" else genotype)
    torch.manual_seed(args.seed)
    model = create_model(args.model, **create_kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(Xt) // args.batch_size
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.15)
    g = torch.Generator().manual_seed(args.seed)
    best = (-1.0, -math.inf)
    history = []
    t_train = time.time()
    stop = False
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(len(Xt), generator=g)
        tl = tc = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch_size:(s + 1) * args.batch_size]
            x, mk = augment(Xt[idx], Mt[idx].float(), g)
            out_, maps = class_maps(model, x)
            loss = F.cross_entropy(out_, Yt[idx])
            if args.aux_weight:
                # lesion share of every CAM cell -> target; the COVID CAM cell (as explain() shows it) is the logit
                target = cam_targets(mk, tuple(maps.shape[2:]))
                aux = F.binary_cross_entropy_with_logits(aux_logits(maps, args.aux_map), target,
                                                         pos_weight=torch.tensor(float(args.aux_pos_weight)))
                loss = loss + args.aux_weight * aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tl += loss.item() * len(idx)
            tc += float((out_.argmax(1) == Yt[idx]).sum())
            if args.max_minutes and (time.time() - t_train) / 60 > args.max_minutes:
                stop = True
                break
        n_seen = (s + 1) * args.batch_size
        precise_bn(model, Xt[perm], args.batch_size)
        pv = predict(model, Xv)
        mv = classification_metrics(Yv.numpy(), pv, ["NonCOVID", "COVID"])
        vloss = float(F.nll_loss(torch.log(torch.from_numpy(pv).clamp_min(1e-12)), Yv).item())
        rec = {"epoch": ep + 1, "train_loss": tl / n_seen, "train_acc": tc / n_seen, "val_acc": mv["accuracy"],
               "val_auc": mv["auc"], "val_loss": vloss, "minutes": (time.time() - t_train) / 60}
        history.append(rec)
        log(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}))
        # a validation set without both classes has no AUC (NaN never compares greater): rank by loss alone
        score = (mv["auc"] if math.isfinite(mv["auc"]) else -1.0, -vloss)
        if score > best:
            best = score
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_epoch = ep + 1
        if stop:
            log("time limit reached")
            break
    train_min = (time.time() - t_train) / 60
    model.load_state_dict(best_state)
    model.eval()
    ps = predict(model, Xs)
    mt = classification_metrics(Ys.numpy(), ps, ["NonCOVID", "COVID"])
    log(f"test (best val epoch {best_epoch}): acc {mt['accuracy']:.3f} AUC {mt['auc']:.3f} "
        f"sens {mt['sensitivity']:.3f} spec {mt['specificity']:.3f} (n={len(Ys)}, {int(Ys.sum())} pos)")
    loc = localise(model, pre, args.seed + 2, list(range(args.n_test)), None)
    log(f"CAM localisation ({loc['n']} positive test cases): pointing {loc['pointing_game']:.3f}, within 15 mm "
        f"{loc['pointing_game_tol15mm']:.3f}, energy in lesions {loc['energy_in_mask']:.3f} (chance "
        f"{loc['energy_chance']:.3f}), lesion-vs-lung AUC {loc['lesion_vs_lung_auc']:.3f}")
    # CPU speed of one whole-scan forward pass (1 thread) — preprocessing of a test case + the network
    from engine.preprocess.volume3d import volume_tensor
    from engine.train.phantom3d import make_case
    c = make_case(args.seed + 2, 0)
    with torch.no_grad():
        model(Xs[:1])
        t = time.perf_counter()
        for _ in range(3):
            x, _ = volume_tensor(pre, c.volume)
            model(x)
        ms = (time.perf_counter() - t) / 3 * 1000
    log(f"CPU (1 thread): {ms:.0f} ms per scan (preprocess + forward, {c.info['shape']} voxels)")

    def stats(infos):
        pos = [i for i in infos if i["label"]]
        if not pos:      # a tiny set may draw no positive
            return {"n": len(infos), "positives": 0, "negatives": len(infos)}
        inv = np.array([i["involvement"] for i in pos])
        return {"n": len(infos), "positives": len(pos), "negatives": len(infos) - len(pos),
                "involvement_pct_quartiles": [round(float(v) * 100, 1) for v in np.percentile(inv, [0, 25, 50, 75, 100])],
                "lesions_per_positive_median": float(np.median([i["n_lesions"] for i in pos])),
                "lesion_ml_median": float(np.median([i["lesion_ml"] for i in pos]))}

    summary = {"test": {k: mt[k] for k in ("accuracy", "auc", "sensitivity", "specificity", "balanced_accuracy")
                        if k in mt},
               "test_set": stats(Is), "val_set": stats(Iv), "train_set": stats(It), "best_epoch": best_epoch,
               "history": history, "localisation": {k: v for k, v in loc.items() if k != "cases"},
               "ms_per_scan_cpu_1thread": round(ms, 1), "train_minutes": round(train_min, 1),
               "data_minutes": round(data_s / 60, 1), "args": vars(args), "params": MODERATE_SET}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    (out / "localisation_cases.json").write_text(json.dumps(loc["cases"], indent=1, default=str) + "\n")
    if args.ship:
        ship_weights(model, pre, create_kwargs, summary, args, Path(args.ship))
        log(f"shipped -> {args.ship}")
    return 0


def ship_weights(model, pre, create_kwargs, summary, args, dest: Path) -> dict[str, Any]:
    from engine.train.phantom3d import MODERATE_SET
    from engine.weights import save_weights

    loc = summary["localisation"]
    metrics = {
        "test_accuracy": summary["test"]["accuracy"], "test_auc": summary["test"]["auc"],
        "test_sensitivity": summary["test"]["sensitivity"], "test_specificity": summary["test"]["specificity"],
        "test_n": summary["test_set"]["n"], "test_positives": summary["test_set"]["positives"],
        "cam_pointing_game": loc["pointing_game"], "cam_pointing_game_tol15mm": loc["pointing_game_tol15mm"],
        "cam_energy_in_lesions": loc["energy_in_mask"], "cam_energy_chance": loc["energy_chance"],
        "cam_lesion_vs_lung_auc": loc["lesion_vs_lung_auc"],
        "ms_per_scan_cpu_1thread": summary["ms_per_scan_cpu_1thread"],
        "train_minutes_cpu": summary["train_minutes"], "best_val_epoch": summary["best_epoch"],
        "test_set": summary["test_set"],
        "evaluated_on": "held-out synthetic phantoms (test set seed "
                        f"{args.seed + 2}); never used for training or epoch selection",
    }
    data = {
        "name": MODERATE_SET["name"] + " (synthetic chest-CT phantoms; positives: multifocal COVID-like lesions, "
                "3-10 per chest, >= 3 % of the lung volume)",
        "generator": "engine.train.phantom3d.make_case -> engine.phantom.make_phantom + "
                     "engine.train.data3d.sample_lesions (in memory, deterministic)",
        "seeds": {"train": args.seed, "val": args.seed + 1, "test": args.seed + 2},
        "sizes": {"train": args.n_train, "val": args.n_val, "test": args.n_test},
        "params": MODERATE_SET,
        "train_set": summary["train_set"],
        "honest_simplification": "positives carry 3-10 large lesions (semi-axes 12-40 mm, >= 3 % of the lung "
                                 "volume); mild disease (a single small lesion) is not represented. Negatives are "
                                 "lesion-free phantoms of the same generator (no other pathology).",
        "licence": "synthetic, generated by LungLens code: no patient data, no third-party licence",
        "reproduce": "python -m engine.train.cli_phantom3d " + " ".join(
            f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in vars(args).items()
            if v not in (None, False) and k not in ("out", "ship", "cache")) + " --out RUN --ship DEST",
    }
    limits = ("Synthetic only: trained and tested on LungLens phantoms, NOT validated on real CT and NOT for "
              "clinical use. Phantom lesions are ellipsoids of -600..-300 HU (ground glass) or -20..+50 HU "
              "(consolidation) in an otherwise clean lung; on real scans anything lung-dense (atelectasis, "
              "vessels, fibrosis, motion, other pneumonias) may score as COVID-like. Demonstrates the 3-D pipeline "
              "(preprocessing, CAM) end to end; it is not a COVID-19 detector.")
    origin = genotype_origin(args.genotype)
    ops_text = f"{' '.join(create_kwargs['genotype'])} ({origin})" if create_kwargs.get("genotype") else origin
    notes = (f"Trained with engine.train.cli_phantom3d (AdamW lr {args.lr}, one-cycle, batch {args.batch_size}, "
             f"{summary['best_epoch']} of {len(summary['history'])} epochs selected on validation AUC, left-right "
             f"flips + in-plane shifts), {summary['train_minutes']} min on 1 CPU thread. Loss: cross-entropy + "
             f"{args.aux_weight} x an auxiliary per-cell lesion-mask loss on the "
             f"{'COVID CAM (the map the viewer shows)' if args.aux_map == 'cam' else 'COVID-minus-NonCOVID map'} "
             f"(the phantoms' exact masks; "
             f"0 = image labels only). Macro strides {args.strides} (finer CAM grid than the paper's). Weights "
             f"stored as float16, run in float32. Genotype: {ops_text}.")
    import copy

    # float16 on disk (5 MB instead of 11 MB); load_state_dict casts back into the float32 model
    half = copy.deepcopy(model).half()
    return save_weights(half, dest, model_name=args.model, create_kwargs=create_kwargs, preprocess=pre,
                        classes=["NonCOVID", "COVID"], positive_class="COVID", metrics=metrics, data=data,
                        notes=notes, licence="Apache-2.0 (weights trained only on synthetic LungLens phantoms)",
                        limits=limits)


if __name__ == "__main__":
    sys.exit(main())
