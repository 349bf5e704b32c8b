"""ONNX Runtime sessions tuned for small CPUs (2 cores is the design point).

* ``intra_op_num_threads`` = the cores this process may use (``$LUNGLENS_THREADS`` overrides), one inter-op
  thread and sequential execution: CNN graphs here are chains, parallel branches only add contention.
* Full graph optimisation (conv+BN/activation fusion, NCHWc layout transforms for AVX2/AVX-512 kernels).
* Denormals flushed to zero (random-init and deep nets produce them; they cost ~100x per op on x86).
* Spinning of idle worker threads is configurable: it saves a few % latency on an idle machine but burns a
  core for a while after each call, which a GUI sharing 2 cores cannot afford, so it is off by default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def default_threads() -> int:
    """Threads for inference: ``$LUNGLENS_THREADS`` or the number of CPUs this process may run on."""
    env = os.environ.get("LUNGLENS_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"LUNGLENS_THREADS must be a positive integer, got {env!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int | None = None, *, spinning: bool = False, optimization: str = "all") -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or default_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    so.log_severity_level = 3   # errors only; ORT warns about every unused initializer otherwise
    return so


def make_session(path: str | Path, threads: int | None = None, *, spinning: bool = False,
                 optimization: str = "all") -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU provider with :func:`session_options`."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads, spinning=spinning, optimization=optimization),
                                providers=["CPUExecutionProvider"])


def tune_optimization(path: str | Path, input_shape: tuple[int, ...], threads: int | None = None, *,
                      batch: int | None = None, rounds: int = 3, max_call_s: float = 2.0) -> dict[str, Any]:
    """Pick the faster graph-optimisation level for this model on this machine: "all" (with the NCHWc layout
    transforms) or "extended" (plain NCHW).  Which wins depends on the network: NCHWc speeds up plain
    convolution stacks, but activations it cannot keep in that layout (ELU in P0's Fire modules, 3-D convs)
    force reorders around every such op.  Timed alternately, best of ``rounds`` calls each, so a busy machine
    disturbs both alike.  A model whose single call exceeds ``max_call_s`` keeps "all" (not worth the wait).
    """
    import time

    import numpy as np

    batch = batch or (4 if len(input_shape) == 3 else 1)
    x = np.random.default_rng(0).standard_normal((batch, *input_shape), dtype=np.float32)
    sessions = {level: make_session(path, threads, optimization=level) for level in ("all", "extended")}
    best = {level: float("inf") for level in sessions}
    for i in range(rounds + 1):                 # round 0 is the warm-up
        for level, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, {"input": x})
            dt = time.perf_counter() - t0
            if i == 0 and dt > max_call_s:
                return {"optimization": "all", "reason": f"not tuned: one call takes {dt:.1f} s"}
            if i > 0:
                best[level] = min(best[level], dt)
    choice = min(best, key=best.get)
    # Prefer the default unless the other level is clearly (>5 %) faster: timing noise must not flip it.
    if choice != "all" and best[choice] > 0.95 * best["all"]:
        choice = "all"
    return {"optimization": choice, "batch": batch,
            "best_ms": {k: round(v * 1e3, 3) for k, v in best.items()}}
