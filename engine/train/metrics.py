"""Classification metrics as defined in the spec (§6), positive class = COVID, plus confidence intervals.

Confusion matrix ``M``: rows = truth, columns = prediction.  For K classes and class i treated as positive:
TP_i = M_ii, FN_i = row sum − M_ii, FP_i = column sum − M_ii, TN_i = N − TP_i − FN_i − FP_i.

* ``accuracy`` = Σ M_ii / N (plain, "micro"; P0, P3, P4 and P2's script).
* ``sensitivity``, ``specificity``, ``precision`` (PPV), ``f1`` — COVID vs rest (P0, P4).
* ``auc`` — ROC AUC of the COVID probability vs the COVID label (Mann–Whitney, ties count ½).
* ``balanced_accuracy`` — mean of per-class recalls (none of the papers uses it; kept separate from P2).
* ``p2_mean_accuracy_eq1`` — P2's Eq. 1: mean over classes of one-vs-rest accuracy (TP_i+TN_i)/N, which equals
  1 − 2e/K for error rate e.  It is *not* plain accuracy; P2's Table II numbers are plain accuracy averaged
  over folds (see ``cv``), so both are reported and labelled.
* per class (K ≥ 3, and also for 2): sensitivity (recall) and PPV (P3), specificity and one-vs-rest accuracy (P1).

Confidence intervals (``mean_ci``): Student-t interval over independent estimates,
mean ± t_{0.975, n−1} · SD / √n (SD with n − 1).  ``wilson_ci`` gives a binomial interval for one proportion.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape} vs {p.shape}")
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def roc_curve(y_true: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for binary labels (1 = positive); thresholds descending, starting at +inf."""
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) else np.array([], dtype=np.int64)
    idx = np.r_[distinct, len(s) - 1] if len(s) else np.array([], dtype=np.int64)
    tps = np.cumsum(y)[idx] if len(s) else np.array([])
    fps = (idx + 1) - tps
    P, N = int(y.sum()), int(len(y) - y.sum())
    tpr = np.r_[0.0, tps / P] if P else np.r_[0.0, np.full(len(tps), np.nan)]
    fpr = np.r_[0.0, fps / N] if N else np.r_[0.0, np.full(len(fps), np.nan)]
    thr = np.r_[np.inf, s[idx]] if len(s) else np.array([np.inf])
    return fpr, tpr, thr


def roc_auc(y_true: Sequence[int], scores: Sequence[float]) -> float:
    """Mann–Whitney U / (P·N) with average ranks for ties; NaN when one class is absent."""
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    P = int(y.sum())
    N = len(y) - P
    if P == 0 or N == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y == 1].sum() - P * (P + 1) / 2.0) / (P * N))


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                           positive: int | None = None, threshold: float | None = None) -> dict:
    """All metrics of one evaluation.  ``probs`` N×K class probabilities.

    Prediction = argmax, or for K = 2 and a given ``threshold``: positive iff p(positive) ≥ threshold.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    k = len(classes)
    if probs.ndim != 2 or probs.shape != (len(y), k):
        raise ValueError(f"probs must be N×{k}, got {probs.shape} for N={len(y)}")
    if positive is None:
        positive = [c.lower() for c in classes].index("covid")
    if threshold is not None and k == 2:
        pred = np.where(probs[:, positive] >= threshold, positive, 1 - positive)
    else:
        pred = probs.argmax(1)
    m = confusion_matrix(y, pred, k)
    n = int(m.sum())
    per_class = {}
    recalls = []
    for i, name in enumerate(classes):
        tp = m[i, i]
        fn = m[i].sum() - tp
        fp = m[:, i].sum() - tp
        tn = n - tp - fn - fp
        per_class[name] = {
            "support": int(m[i].sum()),
            "sensitivity": _div(tp, tp + fn),
            "ppv": _div(tp, tp + fp),
            "specificity": _div(tn, tn + fp),
            "one_vs_rest_accuracy": _div(tp + tn, n),
        }
        recalls.append(_div(tp, tp + fn))
    pos = per_class[classes[positive]]
    sens, prec = pos["sensitivity"], pos["ppv"]
    f1 = _div(2 * prec * sens, prec + sens) if not (math.isnan(sens) or math.isnan(prec)) else float("nan")
    is_pos = (y == positive).astype(np.int64)
    out = {
        "n": n,
        "classes": list(classes),
        "positive_class": classes[positive],
        "accuracy": _div(np.trace(m), n),
        "sensitivity": sens,
        "specificity": pos["specificity"],
        "precision": prec,
        "f1": f1,
        "auc": roc_auc(is_pos, probs[:, positive]),
        "balanced_accuracy": float(np.nanmean(recalls)) if n else float("nan"),
        "p2_mean_accuracy_eq1": float(np.mean([per_class[c]["one_vs_rest_accuracy"] for c in classes])),
        "confusion_matrix": m.tolist(),
        "confusion_matrix_axes": "rows = truth, columns = prediction, order = classes",
        "per_class": per_class,
    }
    if threshold is not None and k == 2:
        out["threshold"] = threshold
    return out


# ---------------------------------------------------------------------------------------------- intervals
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (Numerical Recipes, modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1.0 - x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbeta) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbeta) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t (bisection on the CDF; |error| < 1e-10)."""
    if not 0.0 < q < 1.0:
        raise ValueError("q must be in (0, 1)")
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-11:
            break
    return 0.5 * (lo + hi)


CI_FORMULA = "mean ± t(0.975, n−1) · SD/√n over the per-fold estimates (Student-t, SD with n−1)"


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean, SD, SE and a two-sided Student-t interval over independent estimates (NaNs ignored)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    n = len(v)
    if n == 0:
        return {"n": 0, "mean": float("nan"), "sd": float("nan"), "ci_low": float("nan"),
                "ci_high": float("nan"), "level": level, "formula": CI_FORMULA}
    mean = float(v.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "sd": float("nan"), "se": float("nan"), "ci_low": float("nan"),
                "ci_high": float("nan"), "level": level, "formula": CI_FORMULA}
    sd = float(v.std(ddof=1))
    se = sd / math.sqrt(n)
    half = t_ppf(0.5 + level / 2.0, n - 1) * se
    return {"n": n, "mean": mean, "sd": sd, "se": se, "ci_low": mean - half, "ci_high": mean + half,
            "level": level, "formula": CI_FORMULA}


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (used for single-split accuracies in model cards)."""
    if n == 0:
        return (float("nan"), float("nan"))
    z = _norm_ppf(0.5 + level / 2.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _norm_ppf(q: float) -> float:
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def auc_ci_hanley(auc: float, n_pos: int, n_neg: int, level: float = 0.95) -> tuple[float, float]:
    """Hanley & McNeil (1982) normal-approximation interval for one ROC AUC."""
    if n_pos == 0 or n_neg == 0 or math.isnan(auc):
        return (float("nan"), float("nan"))
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    half = _norm_ppf(0.5 + level / 2.0) * math.sqrt(max(var, 0.0))
    return (max(0.0, auc - half), min(1.0, auc + half))
