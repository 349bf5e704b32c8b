"""Training recipes of the five papers (spec §1.6, §2.2, §3.3, §4.3, §5.4) as ``TrainConfig`` presets.

Where a paper leaves a value open the spec's recommended default is used and the recipe's ``assumed`` list
says so.  Command-line flags override any field.  ``lunglens`` is this project's own recipe, used for the
shipped weights (fast on a CPU; documented in the model cards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from engine.train.loop import TrainConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    paper: str
    config: TrainConfig
    notes: str
    assumed: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> dict:
        return {"recipe": self.name, "paper": self.paper, "notes": self.notes, "assumed": list(self.assumed),
                "config": self.config.to_dict()}


def _covid_weights(classes: Sequence[str], covid_weight: float) -> tuple[float, ...] | None:
    if len(classes) < 3:
        return None  # binary: the re-balancing sampler already equalises the classes
    return tuple(covid_weight if c.lower() == "covid" else 1.0 for c in classes)


def get_recipe(name: str, classes: Sequence[str] = ("NonCOVID", "COVID")) -> Recipe:
    key = (name or "lunglens").lower()
    if key in ("polsinelli", "p0"):
        return Recipe("polsinelli", "P0", TrainConfig(
            epochs=20, batch_size=128, optimizer="sgdm", lr=0.007132, momentum=0.87589, weight_decay=0.9532e-6,
            schedule="step", step_every=5, step_factor=0.8, augment="p0", select="accuracy"),
            "SGD-momentum with the Bayesian-optimised HPs of CNN-1 (exp. 4), offline ×4 augmentation "
            "(rotation U(0°,90°), scale U(1.1,1.3), Gaussian noise), LR ×0.8 every 5 epochs, 20 epochs, "
            "selection on validation accuracy.",
            ("batch 128 (MATLAB default; paper silent)", "noise σ = 0.02 of the unit range"))
    if key in ("garg", "p1"):
        return Recipe("garg", "P1", TrainConfig(
            epochs=30, batch_size=32, optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="plateau",
            plateau_factor=0.5, plateau_patience=3, plateau_threshold=1e-4, label_smoothing=0.1, augment="p1",
            select="accuracy"),
            "Adam 1e-4, ReduceLROnPlateau(×0.5, patience 3, threshold 1e-4) on validation loss, label smoothing, "
            "on-the-fly rotation/shift/shear, best epoch on validation.",
            ("epochs 30 and batch 32 (not stated)", "label smoothing ε = 0.1",
             "rotation ±10°, shifts ±10 %, shear ±0.1 rad"))
    if key in ("abdani", "p2"):
        return Recipe("abdani", "P2", TrainConfig(
            epochs=100, batch_size=64, optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="none",
            augment="none", select="last"),
            "Adam 1e-4, no schedule, no augmentation, 100 epochs, batch 64, the last epoch's model is kept.", ())
    if key in ("wang", "p3"):
        return Recipe("wang", "P3", TrainConfig(
            epochs=22, batch_size=8, optimizer="adam", lr=2e-5, schedule="plateau", plateau_factor=0.7,
            plateau_patience=5, sampler="rebalance", positive_share=0.3, augment="p3",
            class_weights=_covid_weights(classes, 6.0), select="accuracy"),
            "Adam 2e-5, plateau ×0.7 / patience 5, 22 epochs of batch 8 with batch re-balancing (30 % COVID "
            "slots), COVID class weight 6 for 3 classes, rotation/shift/flip/brightness/zoom augmentation.",
            ("no top-1/6 crop (that is for chest X-rays)",))
    if key in ("he", "p4"):
        return Recipe("he", "P4", TrainConfig(
            epochs=200, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=5e-4, schedule="cosine",
            eta_min=1e-6, augment="flip", select="accuracy"),
            "Adam 1e-3, weight decay 5e-4, cosine annealing over all epochs (T_max = epochs, η_min 1e-6), 200 "
            "epochs, batch 64, random flips; selection on validation (the original code selected on test).",
            ("2D flips stand in for the 3D random flips",))
    if key == "lunglens":
        return Recipe("lunglens", "LungLens", TrainConfig(
            epochs=16, batch_size=32, optimizer="adamw", lr=1e-3, weight_decay=1e-2, schedule="cosine",
            eta_min=1e-5, warmup_epochs=1, label_smoothing=0.05, augment="mixed", ema=0.98, select="accuracy"),
            "AdamW 1e-3 (wd 1e-2), 1 warm-up epoch then cosine over 16 epochs, label smoothing 0.05, mixed "
            "geometric + intensity augmentation on the fly, EMA of the weights (0.98/step) evaluated and kept; "
            "selection on validation accuracy (ties: AUC).", ())
    raise ValueError(f"unknown recipe {name!r}; choose one of {RECIPES}")


RECIPES = ("polsinelli", "garg", "abdani", "wang", "he", "lunglens")
