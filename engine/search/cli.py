"""``lunglens-engine search``: CovidNet3D DNAS on a folder of CT volumes (``manifest.csv``), with progress.

    lunglens-engine search --space covidnet3d_s --data DIR [--out DIR] [--epochs 30] [--input-size 16,64,64]

Runs the search stage (resumable: re-run the same command after an interruption), exports
``genotype_argmax.json`` / ``genotype_best_sampled.json``, then the evaluation stage (top-k recorded
architectures trained briefly from scratch; ``--eval-top-k 0`` skips it) -> ``genotype_selected.json``.  Retrain
the selected genotype at full resolution with ``python -m engine.train.cli_train3d``.  ``--make-phantoms N``
first writes N synthetic phantom volumes into an empty ``--data`` folder (a self-contained demo).
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


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Dataset/preprocessing options shared with ``engine.train.cli_train3d``."""
    p.add_argument("--data", required=True, type=Path, help="folder with manifest.csv (file,label[,patient_id,split,mask])")
    p.add_argument("--classes", default=None, help="class list, e.g. NonCOVID,COVID (default) or CP,COVID,Normal")
    p.add_argument("--label-map", default=None,
                   help="map manifest labels to classes: 'mosmed', 'ccccii' or SRC=CLASS,... (e.g. CT-0=NonCOVID)")
    p.add_argument("--slice-spacing", type=float, default=5.0,
                   help="resample every volume to this slice spacing (mm) before slice sampling; 0 = off")
    p.add_argument("--lung-crop", action="store_true", help="crop in-plane to the lung field before resizing")
    p.add_argument("--crop-scale", type=float, default=1.25, help="resize to scale × input, then centre-crop")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)


def make_preprocess(space: str, input_size: tuple[int, ...], args: argparse.Namespace):
    from engine.preprocess import Preprocess

    if len(input_size) != 3:
        raise SystemExit(f"--input-size needs D,H,W (three numbers), got {input_size}")
    return Preprocess.for_model(space, input_size=tuple(input_size), lung_crop=bool(args.lung_crop),
                                target_spacing=(float(args.slice_spacing), 0.0, 0.0) if args.slice_spacing else None,
                                extra={"crop_scale": float(args.crop_scale)})


class ProgressPrinter:
    """Throttled one-line progress on stdout (at most every ``every`` seconds, plus every epoch summary)."""

    def __init__(self, every: float = 5.0, stream=sys.stdout) -> None:
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
        print(line, file=self.stream, flush=True)


def _fmt(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="covidnet3d_s", choices=["covidnet3d_s", "covidnet3d_l"])
    add_data_arguments(p)
    p.add_argument("--split", default="train", help="manifest split used for the search ('' = all rows)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: ./search-<space>)")
    p.add_argument("--epochs", type=int, default=30, help="search epochs (paper: 100)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--input-size", type=_ints, default=(16, 64, 64), help="D,H,W during the search (paper 16,64,64)")
    p.add_argument("--op-set", default="paper", choices=["paper", "code"],
                   help="paper: 8 ops (skip = true skip); code: the released 9 (Identity = 2x, Zero)")
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


def run(args: argparse.Namespace) -> int:
    import torch

    from engine.search.dnas import SearchCancelled, SearchConfig, evaluate_candidates, run_search, top_candidates
    from engine.train.data3d import Dataset3DError, VolumeDataset, make_phantom_dataset, read_manifest3d

    if args.threads:
        torch.set_num_threads(args.threads)
    data_dir: Path = args.data
    if args.make_phantoms:
        if (data_dir / "manifest.csv").is_file():
            print(f"{data_dir} already has a manifest.csv; using it (no phantoms written)")
        else:
            print(f"writing {args.make_phantoms} phantom volumes into {data_dir} ...", flush=True)
            make_phantom_dataset(data_dir, args.make_phantoms, seed=args.seed,
                                 progress=lambda i, n: print(f"  phantom {i}/{n}", flush=True) if i % 10 == 0 else None)
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
    cfg = SearchConfig(space=args.space, op_set=args.op_set,
                       alpha_grad="none" if args.no_alpha_grad else "straight_through",
                       num_classes=len(classes), epochs=args.epochs, batch_size=args.batch_size,
                       steps_per_epoch=args.steps_per_epoch, tau_schedule=args.tau_schedule,
                       tau_start=args.tau_start, tau_end=args.tau_end, warmup_epochs=args.warmup_epochs,
                       alpha_lr=args.alpha_lr, w_lr=args.w_lr,
                       seed=args.seed, device=args.device)
    info = {"folder": str(data_dir), "split": args.split, "n": len(data), "counts": counts,
            "classes": list(classes), "preprocess": pre.to_dict()}
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
                                     device=args.device, progress=printer)
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
