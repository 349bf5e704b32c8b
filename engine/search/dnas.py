"""DNAS with Gumbel-softmax (P4, spec §5.3–5.4): search stage, genotype export, evaluation stage.

Search stage (``run_search``): the training set is split 50/50 into D_T (weights) and D_V (architecture).  Per
iteration: (1) α step — sample an architecture, forward a D_V batch (train mode), cross-entropy, gradient to α
only, Adam (3e-4, betas (0.5, 0.999), wd 1e-3); (2) w step — re-sample, forward a D_T batch, cross-entropy,
clip the weights' grad-norm to 5, Adam (1e-3, wd 5e-4; the released code's optimiser).  Temperature τ: constant
1 (code) or a linear/exponential anneal.  After every epoch the current α is exported twice — a fresh Gumbel
sample (what the code exports) and argmax(α) — and both are scored on D_V in eval mode after re-estimating the
BatchNorm statistics of that sub-network on a few D_T batches (shared BN statistics of a supernet describe no
single path).  Records go to ``history.json`` and ``architectures/epoch_NNN.json``; a checkpoint
(``checkpoint.safetensors``, no pickle) is written every ``checkpoint_every`` steps and at each epoch end, and a
re-run with the same output folder resumes from it.

Resource term (``cost_weight``, an FBNet-style addition, not in P4; 0 = the paper): the α step adds
``cost_weight · Σ softmax(α) · MACs / MACs of the costliest path`` (MACs of each op at the search input size,
``SuperNet.op_macs``), a deterministic push towards cheaper ops — on a CPU product cheaper also means a smaller
receptive field on the CAM grid, which the 3-D phantom work found decides whether the CAM localises.

Exports: ``genotype_argmax.json`` (argmax of the final α) and ``genotype_best_sampled.json`` (the recorded
architecture with the best D_V accuracy), both accepted by ``create_model("covidnet3d_s", genotype=path)``.

Evaluation stage (``evaluate_candidates``): the top-k distinct recorded architectures (by D_V accuracy) are
trained from scratch for a few epochs on a random 80 % of the training set and validated on the other 20 %;
the best is written to ``genotype_selected.json`` (retrain it with ``engine.train.train3d``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.search.checkpoint import load_checkpoint, save_checkpoint
from engine.search.supernet import SuperNet

CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.json"


class SearchData(Protocol):
    """What the search needs from a dataset (``engine.train.data3d.VolumeDataset`` fits)."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int], epoch: int = 0,
              train: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...


class SearchCancelled(Exception):
    """The caller's ``cancel()`` returned True; a checkpoint was written, re-run to resume."""


@dataclass
class SearchConfig:
    space: str = "covidnet3d_s"
    op_set: Any = "paper"                     # 'paper' (8 ops) | 'code' (9: + Identity, Zero) | list of ops
    alpha_grad: str = "straight_through"      # 'none' replicates the released code (α never learns)
    num_classes: int = 2
    in_chans: int = 1
    epochs: int = 100
    batch_size: int = 8
    steps_per_epoch: int | None = None        # default: min(|D_T|, |D_V|) // batch
    split_fraction: float = 0.5               # share of the training set in D_T
    w_optimizer: str = "adam"                 # 'adam' (code) | 'sgd' (paper text)
    w_lr: float = 1e-3
    w_momentum: float = 0.9
    w_weight_decay: float = 5e-4
    grad_clip: float = 5.0
    alpha_lr: float = 3e-4
    alpha_betas: tuple[float, float] = (0.5, 0.999)
    alpha_weight_decay: float = 1e-3
    warmup_epochs: int = 0                    # weight-only epochs before α starts learning (0 = paper)
    tau_schedule: str = "constant"            # 'constant' | 'linear' | 'exponential'
    tau_start: float = 1.0
    tau_end: float = 1.0
    bn_recalibration_batches: int = 4
    eval_batch_size: int = 8
    checkpoint_every: int = 20                # steps
    seed: int = 0
    dropout: float = 0.5
    device: str = "cpu"                       # 'cuda' runs the same search on a GPU
    macro: dict | None = None                 # MacroSpace overrides (strides / stem_stride); None = the paper's
    aux_weight: float = 0.0                   # + aux_weight x per-cell lesion loss on the COVID CAM (needs masks)
    aux_pos_weight: float = 1.0
    positive_class: int = -1                  # the class whose CAM the aux loss trains (COVID; -1 = the last)
    cost_weight: float = 0.0                  # + cost_weight x expected MACs (relative) of the searchable ops

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})

    def tau(self, epoch: int, step: int, steps: int) -> float:
        """Temperature at (epoch, step); anneals over the whole search from tau_start to tau_end."""
        if self.tau_schedule == "constant":
            return self.tau_start
        t = (epoch + step / max(steps, 1)) / max(self.epochs, 1)
        if self.tau_schedule == "linear":
            return self.tau_start + (self.tau_end - self.tau_start) * t
        if self.tau_schedule == "exponential":
            return self.tau_start * (self.tau_end / self.tau_start) ** t
        raise ValueError(f"unknown tau_schedule {self.tau_schedule!r} (constant, linear, exponential)")


@dataclass
class SearchResult:
    out_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    genotype_argmax: list[str] = field(default_factory=list)
    genotype_best_sampled: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- helpers
def _param_count(space: str, genotype: Sequence[str], num_classes: int, in_chans: int,
                 macro: dict | None = None) -> int:
    from engine.models.covidnet3d import CovidNet3D

    return sum(p.numel() for p in CovidNet3D(list(genotype), space=space, num_classes=num_classes,
                                             in_chans=in_chans, macro=macro).parameters())


def genotype_document(space: str, genotype: Sequence[str], source: str, **info: Any) -> dict[str, Any]:
    return {"format": "lunglens-genotype/1", "space": space, "genotype": list(genotype), "source": source,
            **info}


def write_genotype(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def evaluate_path(model: SuperNet, indices: Sequence[int], data: SearchData, eval_idx: Sequence[int],
                  calib_idx: Sequence[int], batch_size: int, calib_batches: int, epoch: int,
                  device: str | torch.device = "cpu") -> tuple[float, float]:
    """(accuracy, mean CE) of one sub-network on ``eval_idx`` with BN statistics re-estimated on
    ``calib_batches`` batches of ``calib_idx`` (the supernet's own BN buffers are restored afterwards)."""
    bns = _bn_modules(model)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum) for m in bns]
    was_training = model.training
    try:
        if calib_batches > 0 and len(calib_idx) > 1:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None           # cumulative average over the calibration batches
            model.train()
            for b in range(calib_batches):
                chunk = calib_idx[b * batch_size:(b + 1) * batch_size]
                if len(chunk) < 2:
                    break
                x, _ = data.batch(chunk, epoch, train=True)
                model(x.to(device), indices)
        model.eval()
        correct, loss, n = 0, 0.0, 0
        for s in range(0, len(eval_idx), batch_size):
            x, y = data.batch(eval_idx[s:s + batch_size], 0, train=False)
            x, y = x.to(device), y.to(device)
            logits = model(x, indices)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        return correct / max(n, 1), loss / max(n, 1)
    finally:
        for m, (rm, rv, nb, mom) in zip(bns, saved):
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
            m.num_batches_tracked.copy_(nb)
            m.momentum = mom
        model.train(was_training)


def _path_loss(model: SuperNet, cfg: SearchConfig, data: SearchData, batch: Sequence[int], epoch: int,
               indices: Sequence[int], weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, logits, labels) of one sampled path on one training-mode batch: cross-entropy, plus — with
    ``cfg.aux_weight`` and a dataset that has ``batch_masks`` (lesion masks on the model grid, augmented with
    the inputs) — the auxiliary per-cell lesion loss on the positive class's CAM that
    ``engine.train.cli_phantom3d`` trains with (the CAM cell is the logit; target: lesion share > 5 %)."""
    if cfg.aux_weight and hasattr(data, "batch_masks"):
        from engine.train.cli_phantom3d import aux_logits, cam_targets, class_maps

        x, y, mk = data.batch_masks(batch, epoch, train=True)
        x, y, mk = x.to(cfg.device), y.to(cfg.device), mk.to(cfg.device)
        logits, maps = class_maps(model, x, indices, weights)
        cam = aux_logits(maps, "cam", target=cfg.positive_class % cfg.num_classes)
        aux = F.binary_cross_entropy_with_logits(cam, cam_targets(mk, tuple(cam.shape[1:])),
                                                 pos_weight=torch.tensor(float(cfg.aux_pos_weight),
                                                                         device=cam.device))
        return F.cross_entropy(logits, y) + cfg.aux_weight * aux, logits, y
    x, y = data.batch(batch, epoch, train=True)
    x, y = x.to(cfg.device), y.to(cfg.device)
    logits = model(x, indices, weights)
    return F.cross_entropy(logits, y), logits, y


def _make_w_optimizer(cfg: SearchConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.w_optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.w_lr, weight_decay=cfg.w_weight_decay)
    if cfg.w_optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.w_lr, momentum=cfg.w_momentum, weight_decay=cfg.w_weight_decay)
    raise ValueError(f"w_optimizer must be 'adam' or 'sgd', got {cfg.w_optimizer!r}")


# ---------------------------------------------------------------------------------------------- search stage
def run_search(cfg: SearchConfig, data: SearchData, out_dir: str | Path, *,
               progress: Callable[[dict[str, Any]], None] | None = None,
               cancel: Callable[[], bool] | None = None, resume: bool = True,
               data_info: dict[str, Any] | None = None) -> SearchResult:
    """Run (or resume) the search stage; see the module docstring."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "architectures").mkdir(exist_ok=True)
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    labels = np.asarray(data.labels)
    from engine.train.data3d import split_indices

    d_t, d_v = split_indices(len(labels), cfg.split_fraction, cfg.seed, labels)
    if len(d_t) < 2 or len(d_v) < 2:
        raise ValueError(f"the search needs at least 4 training volumes (got {len(labels)}): D_T and D_V each "
                         "need two or more")
    bs = min(cfg.batch_size, len(d_t), len(d_v))
    steps = cfg.steps_per_epoch or max(1, min(len(d_t), len(d_v)) // bs)

    model = SuperNet(cfg.space, num_classes=cfg.num_classes, in_chans=cfg.in_chans, op_set=cfg.op_set,
                     dropout=cfg.dropout, alpha_grad=cfg.alpha_grad, macro=cfg.macro).to(cfg.device)
    # resource term (FBNet-style, not in P4): MACs of each op for this input size, relative to the costliest path
    input_shape = tuple(data.batch([d_t[0]], 0, train=False)[0].shape[1:])
    macs = model.op_macs(input_shape)
    cost_table = (macs / macs.max(dim=1).values.sum()).to(cfg.device)
    opt_w = _make_w_optimizer(cfg, model.weight_parameters())
    opt_a = torch.optim.Adam(model.arch_parameters(), lr=cfg.alpha_lr, betas=tuple(cfg.alpha_betas),
                             weight_decay=cfg.alpha_weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    history: list[dict[str, Any]] = []
    epoch, step = 0, 0
    running = {"loss": 0.0, "correct": 0, "n": 0, "alpha_loss": 0.0, "alpha_steps": 0}
    ck = out / CHECKPOINT
    if resume and ck.is_file():
        meta, extra = load_checkpoint(ck, model, {"w": opt_w, "alpha": opt_a})
        saved_cfg = SearchConfig.from_dict(meta["config"])
        key = lambda c: (c.space, c.op_set if isinstance(c.op_set, str) else tuple(c.op_set), c.seed)  # noqa: E731
        if key(saved_cfg) != key(cfg):
            raise ValueError(f"{ck} belongs to another search (space/op_set/seed {saved_cfg.space}/"
                             f"{saved_cfg.op_set}/{saved_cfg.seed}); use another output folder")
        epoch, step, running = int(meta["epoch"]), int(meta["step"]), dict(meta["running"])
        history = list(meta["history"])
        gen.set_state(extra["gumbel_rng"])
        torch.set_rng_state(extra["torch_rng"])
        t_start -= float(meta.get("seconds", 0.0))
        _emit(progress, {"stage": "search", "event": "resumed", "epoch": epoch, "step": step})

    def checkpoint() -> None:
        save_checkpoint(ck, model, {"w": opt_w, "alpha": opt_a},
                        {"config": cfg.to_dict(), "epoch": epoch, "step": step, "running": running,
                         "history": history, "seconds": time.time() - t_start, "d_t": d_t, "d_v": d_v,
                         "data": data_info or {}},
                        {"gumbel_rng": gen.get_state(), "torch_rng": torch.get_rng_state()})

    while epoch < cfg.epochs:
        perm_rng = np.random.default_rng([cfg.seed, epoch])
        order_t = [d_t[i] for i in perm_rng.permutation(len(d_t))]
        order_v = [d_v[i] for i in perm_rng.permutation(len(d_v))]
        t_epoch = time.time()
        while step < steps:
            if cancel is not None and cancel():
                checkpoint()
                raise SearchCancelled(f"search cancelled at epoch {epoch + 1}, step {step}; re-run to resume")
            tau = cfg.tau(epoch, step, steps)
            model.train()
            # (1) architecture step on D_V
            vb = [order_v[(step * bs + j) % len(order_v)] for j in range(bs)]
            if epoch >= cfg.warmup_epochs:
                idx, hard = model.sample(tau, gen)
                loss_a, _, _ = _path_loss(model, cfg, data, vb, epoch, idx, hard)
                if cfg.cost_weight:
                    loss_a = loss_a + cfg.cost_weight * expected_cost(model.alpha, cost_table)
                if cfg.alpha_grad == "straight_through":
                    opt_a.zero_grad(set_to_none=True)
                    (grad_alpha,) = torch.autograd.grad(loss_a, [model.alpha])
                    model.alpha.grad = grad_alpha
                    opt_a.step()
                running["alpha_loss"] += float(loss_a.detach())
                running["alpha_steps"] += 1
            # (2) weight step on D_T
            tb = [order_t[(step * bs + j) % len(order_t)] for j in range(bs)]
            idx, hard = model.sample(tau, gen)
            loss, logits, y = _path_loss(model, cfg, data, tb, epoch, idx, hard.detach())
            opt_w.zero_grad(set_to_none=True)
            loss.backward()
            model.alpha.grad = None
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.weight_parameters(), cfg.grad_clip)
            opt_w.step()
            running["loss"] += loss.item() * len(y)
            running["correct"] += int((logits.argmax(1) == y).sum())
            running["n"] += len(y)
            step += 1
            _emit(progress, {"stage": "search", "event": "step", "epoch": epoch + 1, "epochs": cfg.epochs,
                             "step": step, "steps": steps, "loss": loss.item(), "tau": tau,
                             "elapsed_s": time.time() - t_start})
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < steps:
                checkpoint()
        # ---- end of epoch: export + score the sampled and the argmax architecture on D_V
        model.eval()
        idx_sampled, _ = model.sample(cfg.tau(epoch, steps, steps), gen)
        idx_argmax = model.argmax()
        calib = [order_t[j % len(order_t)] for j in range(cfg.bn_recalibration_batches * bs)]
        acc_s, loss_s = evaluate_path(model, idx_sampled, data, d_v, calib, cfg.eval_batch_size,
                                      cfg.bn_recalibration_batches, epoch, cfg.device)
        if idx_argmax == idx_sampled:
            acc_a, loss_a_val = acc_s, loss_s
        else:
            acc_a, loss_a_val = evaluate_path(model, idx_argmax, data, d_v, calib, cfg.eval_batch_size,
                                              cfg.bn_recalibration_batches, epoch, cfg.device)
        probs = model.probabilities()
        entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum(1).mean())
        record = {
            "epoch": epoch + 1,
            "tau": cfg.tau(epoch, steps, steps),
            "train_loss": running["loss"] / max(running["n"], 1),
            "train_acc": running["correct"] / max(running["n"], 1),
            "alpha_loss": running["alpha_loss"] / max(running["alpha_steps"], 1),
            "genotype_sampled": model.genotype(idx_sampled),
            "val_acc_sampled": acc_s, "val_loss_sampled": loss_s,
            "genotype_argmax": model.genotype(idx_argmax),
            "val_acc_argmax": acc_a, "val_loss_argmax": loss_a_val,
            "alpha_entropy": entropy,
            "expected_cost": float(expected_cost(model.alpha.detach(), cost_table)),
            "argmax_gmacs": round(float(macs.gather(1, torch.tensor(idx_argmax)[:, None]).sum()) / 1e9, 4),
            "argmax_mbconv_blocks": sum("MBConv" in model.ops[i] for i in idx_argmax),
            "alpha_probs": [[round(float(p), 5) for p in row] for row in probs],
            "epoch_seconds": time.time() - t_epoch,
        }
        history.append(record)
        write_genotype(out / "architectures" / f"epoch_{epoch + 1:03d}.json", genotype_document(
            cfg.space, record["genotype_sampled"], "gumbel_sample", epoch=epoch + 1, val_acc=acc_s,
            argmax=record["genotype_argmax"], val_acc_argmax=acc_a))
        epoch += 1
        step = 0
        running = {"loss": 0.0, "correct": 0, "n": 0, "alpha_loss": 0.0, "alpha_steps": 0}
        checkpoint()
        (out / HISTORY).write_text(json.dumps({"config": cfg.to_dict(), "ops": list(model.ops),
                                               "block_keys": model.block_keys, "history": history,
                                               "data": data_info or {}}, indent=1) + "\n", encoding="utf-8")
        _emit(progress, {"stage": "search", "event": "epoch", **{k: v for k, v in record.items()
                                                                 if k != "alpha_probs"}})

    result = SearchResult(out_dir=out, history=history, seconds=time.time() - t_start)
    result.genotype_argmax = model.genotype(model.argmax())
    best = max(history, key=lambda r: (r["val_acc_sampled"], -r["val_loss_sampled"], r["epoch"]))
    result.genotype_best_sampled = best["genotype_sampled"]
    common = dict(op_set=cfg.op_set, alpha_grad=cfg.alpha_grad, search_seconds=round(result.seconds, 1),
                  epochs=cfg.epochs, data=data_info or {})
    if cfg.macro:
        common["macro"] = cfg.macro
    final = history[-1]
    write_genotype(out / "genotype_argmax.json", genotype_document(
        cfg.space, result.genotype_argmax, "argmax_alpha", epoch=final["epoch"], val_acc=final["val_acc_argmax"],
        params=_param_count(cfg.space, result.genotype_argmax, cfg.num_classes, cfg.in_chans, cfg.macro), **common))
    write_genotype(out / "genotype_best_sampled.json", genotype_document(
        cfg.space, result.genotype_best_sampled, "best_sampled", epoch=best["epoch"], val_acc=best["val_acc_sampled"],
        params=_param_count(cfg.space, result.genotype_best_sampled, cfg.num_classes, cfg.in_chans, cfg.macro),
        **common))
    return result


def expected_cost(alpha: torch.Tensor, cost_table: torch.Tensor) -> torch.Tensor:
    """Σ_blocks Σ_ops softmax(α) · cost: the architecture's expected relative MACs, differentiable in α."""
    return (F.softmax(alpha, dim=-1) * cost_table).sum()


def _emit(progress: Callable[[dict[str, Any]], None] | None, event: dict[str, Any]) -> None:
    if progress is not None:
        progress(event)


# ---------------------------------------------------------------------------------------------- evaluation stage
def top_candidates(history: Sequence[dict[str, Any]], k: int = 10,
                   include_argmax: bool = True) -> list[dict[str, Any]]:
    """The top-k distinct recorded architectures by D_V accuracy (ties: lower loss, later epoch)."""
    cands: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in history:
        entries = [("gumbel_sample", r["genotype_sampled"], r["val_acc_sampled"], r["val_loss_sampled"])]
        if include_argmax:
            entries.append(("argmax_alpha", r["genotype_argmax"], r["val_acc_argmax"], r["val_loss_argmax"]))
        for source, g, acc, loss in entries:
            key = tuple(g)
            cur = cands.get(key)
            if cur is None or (acc, -loss, r["epoch"]) > (cur["val_acc"], -cur["val_loss"], cur["epoch"]):
                cands[key] = {"genotype": list(g), "val_acc": acc, "val_loss": loss, "epoch": r["epoch"],
                              "source": source}
    ranked = sorted(cands.values(), key=lambda c: (c["val_acc"], -c["val_loss"], c["epoch"]), reverse=True)
    return ranked[:k]


def evaluate_candidates(space: str, candidates: Sequence[dict[str, Any]], data: SearchData, out_dir: str | Path, *,
                        epochs: int = 1, batch_size: int = 8, lr: float = 1e-3, weight_decay: float = 5e-4,
                        train_fraction: float = 0.8, seed: int = 0, num_classes: int = 2, in_chans: int = 1,
                        device: str = "cpu", progress: Callable[[dict[str, Any]], None] | None = None,
                        cancel: Callable[[], bool] | None = None, macro: dict | None = None) -> dict[str, Any]:
    """Train each candidate from scratch for ``epochs`` on a random ``train_fraction`` of ``data`` and score it
    on the rest (paper: "for several batches"; code: 1 epoch on 80 %).  Writes ``evaluation.json`` and
    ``genotype_selected.json``; returns the evaluation record.  Finished candidates are kept on re-run."""
    from engine.models.covidnet3d import CovidNet3D
    from engine.train.data3d import split_indices

    out = Path(out_dir)
    report_path = out / "evaluation.json"
    done: dict[str, Any] = {}
    if report_path.is_file():
        prev = json.loads(report_path.read_text(encoding="utf-8"))
        done = {json.dumps(r["genotype"]): r for r in prev.get("candidates", []) if "eval_acc" in r}
    tr, va = split_indices(len(data), train_fraction, seed + 17, np.asarray(data.labels))
    results = []
    for c_i, cand in enumerate(candidates):
        key = json.dumps(cand["genotype"])
        if key in done:
            results.append(done[key])
            continue
        if cancel is not None and cancel():
            raise SearchCancelled("evaluation stage cancelled; re-run to resume")
        torch.manual_seed(seed)
        model = CovidNet3D(cand["genotype"], space=space, num_classes=num_classes, in_chans=in_chans,
                           macro=macro).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        t0 = time.time()
        for e in range(epochs):
            order = np.random.default_rng([seed, 1000 + e]).permutation(tr)
            model.train()
            for s in range(0, len(order) - 1, batch_size):
                chunk = order[s:s + batch_size]
                if len(chunk) < 2:
                    break
                x, y = data.batch(chunk, e, train=True)
                x, y = x.to(device), y.to(device)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _emit(progress, {"stage": "evaluate", "event": "step", "candidate": c_i + 1,
                                 "candidates": len(candidates), "epoch": e + 1, "epochs": epochs,
                                 "loss": loss.item()})
        model.eval()
        correct, total, nll = 0, 0, 0.0
        with torch.no_grad():
            for s in range(0, len(va), batch_size):
                x, y = data.batch(va[s:s + batch_size], 0, train=False)
                x, y = x.to(device), y.to(device)
                logits = model(x)
                correct += int((logits.argmax(1) == y).sum())
                nll += float(F.cross_entropy(logits, y, reduction="sum"))
                total += len(y)
        rec = dict(cand, eval_acc=correct / max(total, 1), eval_loss=nll / max(total, 1),
                   params=sum(p.numel() for p in model.parameters()), eval_seconds=time.time() - t0)
        results.append(rec)
        write_genotype(report_path, {"space": space, "epochs": epochs, "train_fraction": train_fraction,
                                     "candidates": results})
        _emit(progress, {"stage": "evaluate", "event": "candidate", "candidate": c_i + 1,
                         "candidates": len(candidates), "eval_acc": rec["eval_acc"], "eval_loss": rec["eval_loss"]})
    best = max(results, key=lambda r: (r["eval_acc"], -r["eval_loss"], r["val_acc"]))
    report = {"space": space, "epochs": epochs, "train_fraction": train_fraction, "candidates": results,
              "selected": best}
    write_genotype(report_path, report)
    write_genotype(out / "genotype_selected.json", genotype_document(
        space, best["genotype"], "evaluation_stage", search_source=best["source"], search_epoch=best["epoch"],
        search_val_acc=best["val_acc"], eval_acc=best["eval_acc"], params=best["params"],
        **({"macro": macro} if macro else {})))
    return report


__all__ = ["SearchConfig", "SearchResult", "SearchCancelled", "run_search", "top_candidates",
           "evaluate_candidates", "evaluate_path", "expected_cost", "genotype_document", "write_genotype",
           "CHECKPOINT", "HISTORY"]
