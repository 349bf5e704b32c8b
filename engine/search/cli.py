"""``lunglens-engine search``: CovidNet3D DNAS on a folder of CT volumes (``manifest.csv``), with progress.

    lunglens-engine search --space covidnet3d_s --data DIR [--out DIR] [--epochs 30] [--input-size 16,64,64]

Runs the search stage (resumable: re-run the same command after an interruption), exports
``genotype_argmax.json`` / ``genotype_best_sampled.json``, then the evaluation stage (top-k recorded
architectures trained briefly from scratch; ``--eval-top-k 0`` skips it) -> ``genotype_selected.json``.  Retrain
the selected genotype at full resolution with ``python -m engine.train.cli_train3d``.  ``--make-phantoms N``
first writes N synthetic phantom volumes into an empty ``--data`` folder (a self-contained demo).

``--phantom3d N`` searches on N in-memory phantoms of ``engine.train.phantom3d`` (no ``--data`` folder) with the
input set-up of ``python -m engine.train.cli_phantom3d`` (whole lung box: ``--crop-scale`` defaults to 1.0 there,
its flips + in-plane shifts as training augmentation); pair it with that recipe's ``--input-size 32,64,64
--slice-spacing 8 --strides 2,1x2x2,1,1,1,1`` so the exported genotype is searched on the grid it is trained on:

    lunglens-engine search --phantom3d 480 --input-size 32,64,64 --slice-spacing 8 --strides 2,1x2x2,1,1,1,1 \
        --op-set skip,3x3x3_MBConv3,3x3x3_MBConv6,5x5x5_MBConv3 --epochs 14 --steps-per-epoch 30 \
        --warmup-epochs 2 --alpha-lr 1e-2 --tau-schedule exponential --tau-end 0.3 --eval-top-k 3 \
        --aux-weight 1.0 --cost-weight 0.25 --threads 1 --out runs/search-phantom3d

(the search behind the shipped covidnet3d_s, ~28 min on one thread; resources/genotypes/README.md says what its
resource term ``--cost-weight`` did and what the supernet did not learn on this budget).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected integers like 16,64,64, got {text!r}") from exc


PAPER_CROP_SCALE = 1.25          # the paper's resize-then-centre-crop factor


def add_data_arguments(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    """Dataset/preprocessing options shared with ``engine.train.cli_train3d``."""
    p.add_argument("--data", required=data_required, type=Path,
                   help="folder with manifest.csv (file,label[,patient_id,split,mask])")
    p.add_argument("--classes", default=None, help="class list, e.g. NonCOVID,COVID (default) or CP,COVID,Normal")
    p.add_argument("--label-map", default=None,
                   help="map manifest labels to classes: 'mosmed', 'ccccii' or SRC=CLASS,... (e.g. CT-0=NonCOVID)")
    p.add_argument("--slice-spacing", type=float, default=5.0,
                   help="resample every volume to this slice spacing (mm) before slice sampling; 0 = off")
    p.add_argument("--lung-crop", action="store_true", help="crop in-plane to the lung field before resizing")
    p.add_argument("--crop-scale", type=float, default=None,
                   help="resize to scale × input, then centre-crop (default 1.25, the paper's; 1.0 with "
                        "--phantom3d: the whole lung box)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)


def make_preprocess(space: str, input_size: tuple[int, ...], args: argparse.Namespace):
    from engine.preprocess import Preprocess

    if len(input_size) != 3:
        raise SystemExit(f"--input-size needs D,H,W (three numbers), got {input_size}")
    crop_scale = PAPER_CROP_SCALE if getattr(args, "crop_scale", None) is None else args.crop_scale
    return Preprocess.for_model(space, input_size=tuple(input_size), lung_crop=bool(args.lung_crop),
                                target_spacing=(float(args.slice_spacing), 0.0, 0.0) if args.slice_spacing else None,
                                extra={"crop_scale": float(crop_scale)})



def parse_strides(text: str | None) -> dict | None:
    """``--strides`` text -> a macro override: ``2,1x2x2,1,1,1,1`` -> ``{"strides": [2, [1, 2, 2], 1, 1, 1, 1]}``
    (one entry per cell, ``ZxYxX`` for an anisotropic stride); ``None``/``''``/``paper`` -> None (the paper's)."""
    if not text or text == "paper":
        return None
    try:
        strides = [[int(v) for v in t.split("x")] if "x" in t else int(t) for t in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected strides like 2,1x2x2,1,1,1,1, got {text!r}") from exc
    return {"strides": strides}


class PhantomTensorData:
    """In-memory phantom3d cases as the search's ``SearchData``: preprocessed input tensors N×1×D×H×W, labels;
    ``batch(train=True)`` applies ``cli_phantom3d.augment`` (left-right flip, in-plane shift)."""

    def __init__(self, x, y, m, seed: int = 0) -> None:
        import numpy as np
        import torch

        self.x, self.y, self.m = x, y, m
        self.labels = np.asarray(y.numpy())
        self._gen = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices, epoch: int = 0, train: bool | None = None):
        x, y, _ = self.batch_masks(indices, epoch, train)
        return x, y

    def batch_masks(self, indices, epoch: int = 0, train: bool | None = None):
        """(inputs, labels, lesion masks on the model grid), masks flipped/shifted with their inputs."""
        from engine.train.cli_phantom3d import augment

        idx = list(indices)
        x, m = self.x[idx].float(), self.m[idx].float()
        if train:
            x, m = augment(x, m, self._gen)
        return x, self.y[idx], m


def phantom3d_data(args: argparse.Namespace, pre) -> tuple[PhantomTensorData, dict]:
    """The first ``args.phantom3d`` cases of set ``args.phantom_seed``.  Case i depends only on (seed, i), so a
    larger cached set of the same seed and preprocessing (e.g. cli_phantom3d's 480 training cases) is sliced
    instead of generating the cases again."""
    import re

    from engine.train.cli_phantom3d import cache_stem, cached_tensors

    cache = Path(args.cache) if args.cache else None
    n, seed = args.phantom3d, args.phantom_seed
    size = n
    if cache is not None and cache.is_dir():
        larger = sorted({int(mt.group(1)) for f in cache.glob(f"set{seed}_n*_*.pt")
                         if (mt := re.match(rf"set{seed}_n(\d+)_", f.name)) and int(mt.group(1)) > n})
        size = next((big for big in larger
                     if cache_stem(cache, pre, seed, big, None).with_suffix(".pt").is_file()), n)
    x, y, m, _ = cached_tensors(cache, pre, seed, size, None, lambda msg: print(msg, flush=True))
    x, y, m = x[:n], y[:n], m[:n]
    return PhantomTensorData(x, y, m, args.seed), {
        "generator": "engine.train.phantom3d.make_case (in memory)", "set_seed": args.phantom_seed,
        "n": int(len(y)), "counts": {"NonCOVID": int((y == 0).sum()), "COVID": int((y == 1).sum())}}


class ProgressPrinter:
    """Throttled one-line progress on stdout (at most every ``every`` seconds, plus every epoch summary)."""

    def __init__(self, every: float = 5.0, stream=None) -> None:
        # stream None = the sys.stdout of the moment of printing (a default bound at import would keep writing to
        # whatever stdout was current when this module was first imported, e.g. before pytest's capture)
        self.every, self.stream, self.last, self.t0 = every, stream, 0.0, time.time()
        self.step_times: list[float] = []
        self._t_step = time.time()

    def __call__(self, e: dict[str, Any]) -> None:
        now = time.time()
        ev = e.get("event")
        if ev == "step":
            self.step_times.append(now - self._t_step)
            self.step_times = self.step_times[-50:]
            self._t_step = now
            if now - self.last < self.every:
                return
            self.last = now
            if "steps" in e and "epochs" in e:
                left = ((e["epochs"] - e["epoch"]) * e["steps"] + e["steps"] - e["step"])
                eta = left * (sum(self.step_times) / max(len(self.step_times), 1))
                where = f"epoch {e['epoch']}/{e['epochs']} · step {e['step']}/{e['steps']}"
            else:
                eta = float("nan")
                where = f"candidate {e.get('candidate')}/{e.get('candidates')} · epoch {e['epoch']}/{e['epochs']}"
            tail = f" · ~{_fmt(eta)} left" if eta == eta else ""
            self._print(f"[{e['stage']}] {where} · loss {e['loss']:.3f}"
                        + (f" · τ {e['tau']:.2f}" if "tau" in e else "")
                        + f" · {_fmt(now - self.t0)} elapsed{tail}")
        elif ev == "epoch" and e.get("stage") == "search":
            self._print(f"[search] epoch {e['epoch']} done: train acc {e['train_acc']:.3f} · D_V acc sampled "
                        f"{e['val_acc_sampled']:.3f} / argmax {e['val_acc_argmax']:.3f} · α entropy "
                        f"{e['alpha_entropy']:.3f} · {_fmt(e['epoch_seconds'])}")
        elif ev == "epoch":
            extra = f" · val acc {e['val_acc']:.3f} (best epoch {e['best_epoch']})" if "val_acc" in e else ""
            self._print(f"[{e['stage']}] epoch {e['epoch']} done: train loss {e['train_loss']:.3f} acc "
                        f"{e['train_acc']:.3f}{extra} · {_fmt(e['epoch_seconds'])}")
        elif ev == "candidate":
            self._print(f"[evaluate] candidate {e['candidate']}/{e['candidates']}: held-out acc {e['eval_acc']:.3f}")
        elif ev == "resumed":
            self._print(f"[{e['stage']}] resumed from checkpoint at epoch {e['epoch'] + 1}, step {e['step']}")

    def _print(self, line: str) -> None:
        print(line, file=self.stream if self.stream is not None else sys.stdout, flush=True)


def _fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="covidnet3d_s", choices=["covidnet3d_s", "covidnet3d_l"])
    add_data_arguments(p, data_required=False)
    p.add_argument("--split", default="train", help="manifest split used for the search ('' = all rows)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: ./search-<space>)")
    p.add_argument("--epochs", type=int, default=30, help="search epochs (paper: 100)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--input-size", type=_ints, default=(16, 64, 64), help="D,H,W during the search (paper 16,64,64)")
    p.add_argument("--op-set", default="paper",
                   help="paper: 8 ops (skip = true skip); code: the released 9 (Identity = 2x, Zero); or a "
                        "comma-separated subset, e.g. skip,3x3x3_MBConv3,3x3x3_MBConv6,5x5x5_MBConv3")
    p.add_argument("--no-alpha-grad", action="store_true",
                   help="replicate the released code: α receives no gradient (random search with weight sharing)")
    p.add_argument("--tau-schedule", default="constant", choices=["constant", "linear", "exponential"])
    p.add_argument("--tau-start", type=float, default=1.0)
    p.add_argument("--tau-end", type=float, default=1.0)
    p.add_argument("--warmup-epochs", type=int, default=0, help="weight-only epochs before α learns")
    p.add_argument("--alpha-lr", type=float, default=3e-4,
                   help="Adam LR of α (paper/code 3e-4 over ~100 full epochs; raise it for short searches)")
    p.add_argument("--w-lr", type=float, default=1e-3, help="Adam LR of the supernet weights")
    p.add_argument("--eval-top-k", type=int, default=10, help="evaluation stage: candidates (0 = skip)")
    p.add_argument("--eval-epochs", type=int, default=1, help="evaluation stage: epochs per candidate")
    p.add_argument("--make-phantoms", type=int, default=0, metavar="N",
                   help="write N synthetic phantom volumes into --data first (only if it has no manifest.csv)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--strides", default=None,
                   help="macro cell strides, e.g. 2,1x2x2,1,1,1,1 (the shipped covidnet3d_s grid); default the paper's")
    p.add_argument("--phantom3d", type=int, default=0, metavar="N",
                   help="search on N in-memory engine.train.phantom3d cases instead of a --data folder")
    p.add_argument("--phantom-seed", type=int, default=3000,
                   help="phantom3d set seed (3000 = cli_phantom3d's training set; its val/test use +1/+2)")
    p.add_argument("--cache", default=None, help="folder for cached phantom3d input tensors (cli_phantom3d's)")
    p.add_argument("--aux-weight", type=float, default=0.0,
                   help="with --phantom3d: add the auxiliary lesion-mask loss on the COVID CAM (cli_phantom3d's, "
                        "which trains with 1.0) to both the weight and the architecture step (0 = the paper's CE)")
    p.add_argument("--cost-weight", type=float, default=0.0,
                   help="resource term in the architecture step: weight x expected MACs of the searchable ops "
                        "relative to the costliest path (FBNet-style; 0 = the paper, no term)")


def run(args: argparse.Namespace) -> int:
    import torch

    from engine.search.dnas import SearchCancelled, SearchConfig, evaluate_candidates, run_search, top_candidates
    from engine.train.data3d import Dataset3DError, VolumeDataset, make_phantom_dataset, read_manifest3d

    if args.threads:
        torch.set_num_threads(args.threads)
    macro = parse_strides(args.strides)
    op_set = args.op_set if args.op_set in ("paper", "code") else [o.strip() for o in args.op_set.split(",")]
    try:
        from engine.search.supernet import candidate_ops

        candidate_ops(op_set)
    except ValueError as exc:
        print(f"lunglens-engine search: --op-set: {exc}", file=sys.stderr)
        return 2
    if args.phantom3d:
        from engine.train.cli_phantom3d import build_preprocess

        if args.slice_spacing <= 0:
            print("lunglens-engine search: --phantom3d needs a --slice-spacing (cli_phantom3d: 8)", file=sys.stderr)
            return 2
        pre = build_preprocess(args.space, tuple(args.input_size), args.slice_spacing,
                               1.0 if args.crop_scale is None else args.crop_scale)
        data, info = phantom3d_data(args, pre)
        classes = ["NonCOVID", "COVID"]
        counts = info["counts"]
        info = dict(info, classes=classes, preprocess=pre.to_dict())
        out = args.out or Path(f"search-{args.space}")
        print(f"search {args.space}: {len(data)} phantom3d cases {counts} (set seed {args.phantom_seed}), input "
              f"{'x'.join(map(str, args.input_size))}, strides {args.strides or 'paper'}, output {out}", flush=True)
    else:
        if args.data is None:
            print("lunglens-engine search: give --data DIR (or --phantom3d N)", file=sys.stderr)
            return 2
        data_dir: Path = args.data
        if args.make_phantoms:
            if (data_dir / "manifest.csv").is_file():
                print(f"{data_dir} already has a manifest.csv; using it (no phantoms written)")
            else:
                print(f"writing {args.make_phantoms} phantom volumes into {data_dir} ...", flush=True)
                make_phantom_dataset(data_dir, args.make_phantoms, seed=args.seed,
                                     progress=lambda i, n: print(f"  phantom {i}/{n}", flush=True) if i % 10 == 0
                                     else None)
        try:
            records, classes = read_manifest3d(data_dir, classes=args.classes, label_map=args.label_map,
                                               split=args.split or None)
        except Dataset3DError as exc:
            print(f"lunglens-engine search: {exc}", file=sys.stderr)
            return 2
        pre = make_preprocess(args.space, args.input_size, args)
        from engine.train.data3d import default_box_cache

        data = VolumeDataset(records, pre, classes, train=True, seed=args.seed, box_cache=default_box_cache())
        out = args.out or Path(f"search-{args.space}")
        counts = {c: int((data.labels == i).sum()) for i, c in enumerate(classes)}
        print(f"search {args.space}: {len(data)} volumes {counts} from {data_dir} (split {args.split or 'all'}), "
              f"input {'x'.join(map(str, args.input_size))}, output {out}", flush=True)
        print("loading volumes ...", flush=True)
        data.preload()
        info = {"folder": str(data_dir), "split": args.split, "n": len(data), "counts": counts,
                "classes": list(classes), "preprocess": pre.to_dict()}
    cfg = SearchConfig(space=args.space, op_set=op_set,
                       alpha_grad="none" if args.no_alpha_grad else "straight_through",
                       num_classes=len(classes), epochs=args.epochs, batch_size=args.batch_size,
                       steps_per_epoch=args.steps_per_epoch, tau_schedule=args.tau_schedule,
                       tau_start=args.tau_start, tau_end=args.tau_end, warmup_epochs=args.warmup_epochs,
                       alpha_lr=args.alpha_lr, w_lr=args.w_lr,
                       seed=args.seed, device=args.device, macro=macro,
                       aux_weight=args.aux_weight if args.phantom3d else 0.0, cost_weight=args.cost_weight,
                       positive_class=list(classes).index("COVID") if "COVID" in classes else -1)
    printer = ProgressPrinter()
    try:
        result = run_search(cfg, data, out, progress=printer, resume=not args.fresh, data_info=info)
    except SearchCancelled as exc:
        print(str(exc))
        return 1
    print(f"search finished in {_fmt(result.seconds)}; argmax genotype -> {out / 'genotype_argmax.json'}, "
          f"best sampled -> {out / 'genotype_best_sampled.json'}", flush=True)
    summary: dict[str, Any] = {"search_seconds": result.seconds, "genotype_argmax": result.genotype_argmax,
                               "genotype_best_sampled": result.genotype_best_sampled}
    if args.eval_top_k > 0:
        cands = top_candidates(result.history, args.eval_top_k)
        print(f"evaluation stage: {len(cands)} candidate(s), {args.eval_epochs} epoch(s) each", flush=True)
        t0 = time.time()
        report = evaluate_candidates(args.space, cands, data, out, epochs=args.eval_epochs,
                                     batch_size=args.batch_size, seed=args.seed, num_classes=len(classes),
                                     device=args.device, progress=printer, macro=macro)
        summary.update(evaluation_seconds=time.time() - t0, selected=report["selected"])
        print(f"selected genotype (held-out acc {report['selected']['eval_acc']:.3f}) -> "
              f"{out / 'genotype_selected.json'}", flush=True)
    (out / "search_summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lunglens-engine search", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
