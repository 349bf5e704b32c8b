"""Bayesian hyper-parameter optimisation (seed 000): initial LR, momentum and L2 of SGD-momentum.

Optuna's TPE sampler (a sequential model-based / Bayesian optimiser; P0 used MATLAB's GP-based ``bayesopt``),
seeded; the objective is validation accuracy (P0) or AUC.  Each trial trains from scratch with the recipe's
other settings.  The study lives in SQLite (``<out>/study.db``), so an interrupted search resumes where it
stopped: finished trials are kept, a trial that was running when the process died is marked failed and its
parameters are re-queued.  Unpromising trials are pruned per epoch (median rule after ``warmup`` epochs).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from engine.train.data import TensorData
from engine.train.loop import TrainConfig, fit, json_clean

SEARCH_SPACE = {
    "lr": (1e-4, 1e-1, "log"),
    "momentum": (0.5, 0.99, "linear"),
    "weight_decay": (1e-10, 1e-2, "log"),
}


def _storage(out: Path):
    import optuna

    return optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}",
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def _requeue_stale(study) -> int:
    """Trials left RUNNING by a killed process: mark failed, enqueue their parameters again."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)  # noqa: SLF001
        study.enqueue_trial(dict(t.params), skip_if_exists=False)
        n += 1
    return n


def trials_table(study) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        last = None
        if t.intermediate_values:
            last = t.intermediate_values[max(t.intermediate_values)]
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
                     "epochs": len(t.intermediate_values), "last_value": last,
                     "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                     if t.datetime_complete and t.datetime_start else None})
    return rows


def run_hpo(model_factory: Callable[[], torch.nn.Module], train: TensorData, val: TensorData, cfg: TrainConfig,
            out: str | Path, *, trials: int = 30, objective: str = "accuracy", seed: int = 0,
            study_name: str = "lunglens-hpo", pruning: bool = True, warmup: int = 3,
            space: dict[str, tuple[float, float, str]] | None = None,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or continue) a study until it holds ``trials`` finished (complete or pruned) trials."""
    import optuna
    from optuna.trial import TrialState

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda s: None)
    space = space or SEARCH_SPACE
    if objective not in ("accuracy", "auc"):
        raise ValueError("objective must be accuracy or auc")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, max(2, trials // 3)))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup) if pruning
              else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=study_name, storage=_storage(out), direction="maximize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    requeued = _requeue_stale(study)
    if requeued:
        log(f"resuming study: {requeued} interrupted trial(s) re-queued")
    study.set_user_attr("objective", f"validation {objective}")
    study.set_user_attr("base_config", json_clean(cfg.to_dict()))

    def objective_fn(trial: "optuna.Trial") -> float:
        params = {}
        for name, (lo, hi, kind) in space.items():
            params[name] = trial.suggest_float(name, lo, hi, log=(kind == "log"))
        tcfg = replace(cfg, **params)
        torch.manual_seed(cfg.seed)
        model = model_factory()

        def report(epoch: int, row: dict[str, Any]) -> bool:
            value = row.get(f"val_{objective}")
            value = 0.0 if value is None else float(value)
            trial.report(value, epoch)
            return trial.should_prune()

        result = fit(model, train, val, tcfg, out / f"trial_{trial.number:03d}", resume=False, on_epoch=report,
                     log=lambda s: log(f"trial {trial.number}: {s}"), curves=False)
        if result.stopped == "pruned":
            raise optuna.TrialPruned()
        value = result.best_metrics.get(objective) if result.best_metrics else None
        trial.set_user_attr("best_epoch", result.best_epoch + 1)
        trial.set_user_attr("val_metrics", json_clean({k: result.best_metrics[k] for k in
                                                       ("accuracy", "auc", "sensitivity", "specificity")}))
        return 0.0 if value is None else float(value)

    def finished() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    failures = 0
    while finished() < trials and failures < max(3, trials):
        study.optimize(objective_fn, n_trials=1, catch=(FloatingPointError,))
        t = study.trials[-1]
        failures += t.state == TrialState.FAIL
        log(f"trial {t.number} {t.state.name} value={t.value} params={t.params}")
    table = trials_table(study)
    complete = [t for t in table if t["state"] == "COMPLETE"]
    summary: dict[str, Any] = {
        "study": study_name, "storage": str(out / "study.db"), "objective": f"validation {objective}",
        "sampler": "Optuna TPE (seeded)", "pruner": f"median, warm-up {warmup} epochs" if pruning else "none",
        "search_space": {k: list(v) for k, v in space.items()},
        "n_trials": len(table), "n_complete": len(complete),
        "n_pruned": sum(t["state"] == "PRUNED" for t in table), "n_failed": sum(t["state"] == "FAIL" for t in table),
        "trials": table,
    }
    if complete:
        best = study.best_trial
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                           "val_metrics": best.user_attrs.get("val_metrics"),
                           "best_epoch": best.user_attrs.get("best_epoch")}
    try:
        from engine.train.plots import hpo_plot
        hpo_plot(table, list(space), out / "hpo.png", objective=f"validation {objective}")
        summary["plot"] = str(out / "hpo.png")
    except Exception as exc:  # pragma: no cover - plotting must not lose a finished study
        log(f"warning: could not draw the HPO plot: {exc}")
    (out / "hpo_summary.json").write_text(json.dumps(json_clean(summary), indent=2, default=str) + "\n")
    return summary
