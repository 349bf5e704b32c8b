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


def tune_session(path: str | Path, input_shape: tuple[int, ...], threads: int | None = None, *,
                 rounds: int = 3, max_call_s: float = 1.0,
                 chunks: tuple[int, ...] = (1, 2, 4, 8, 16)) -> dict[str, Any]:
    """Measure, for this model on this machine, the two choices that change ONNX Runtime's speed most:

    * the graph-optimisation level — "all" (NCHWc layout transforms) or "extended" (plain NCHW).  NCHWc speeds
      up plain convolution stacks, but ops it cannot keep in that layout (ELU in P0's Fire modules, 3-D convs)
      force reorders around each of them;
    * the chunk size a large batch is split into (``Predictor`` runs batches in chunks).  On a 2-core CPU a
      small chunk often beats batch 16 per item: the activations of one or two slices stay in cache, and
      ORT parallelises inside each convolution anyway.

    Timed alternately, best of ``rounds`` calls each (noise from other processes hits all options alike);
    another option must be >5 % faster to replace the default ("all", the largest chunk).  Models whose single
    item takes longer than ``max_call_s`` are not tuned (the defaults; tuning would cost minutes).
    """
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, *input_shape), dtype=np.float32)
    sessions = {level: make_session(path, threads, optimization=level) for level in ("all", "extended")}
    t0 = time.perf_counter()
    sessions["all"].run(None, {"input": one})
    first = time.perf_counter() - t0
    if first > max_call_s:
        return {"optimization": "all", "chunk": None, "reason": f"not tuned: one item takes {first:.1f} s"}

    def best_of(fn: Any) -> float:
        return min(_timed(fn) for _ in range(rounds))

    probe = 1 if len(input_shape) == 4 else 4
    x = rng.standard_normal((probe, *input_shape), dtype=np.float32)
    level_ms: dict[str, float] = {level: float("inf") for level in sessions}
    for sess in sessions.values():
        sess.run(None, {"input": x})                       # warm-up
    for _ in range(rounds):
        for level, sess in sessions.items():
            level_ms[level] = min(level_ms[level], _timed(lambda: sess.run(None, {"input": x})) / probe)
    level = "extended" if level_ms["extended"] < 0.95 * level_ms["all"] else "all"

    sess = sessions[level]
    volumetric = len(input_shape) == 4                        # C×D×H×W
    sizes = [c for c in chunks if not volumetric or c <= 2]
    per_item: dict[int, float] = {}
    budget_end = time.perf_counter() + 20.0                  # never spend more than ~20 s here
    for c in sizes:
        if time.perf_counter() > budget_end:
            break
        xc = rng.standard_normal((c, *input_shape), dtype=np.float32)
        sess.run(None, {"input": xc})
        per_item[c] = best_of(lambda: sess.run(None, {"input": xc})) / c
    largest = max(per_item)
    chunk = min(per_item, key=per_item.get)
    if per_item[chunk] > 0.95 * per_item[largest]:
        chunk = largest
    return {"optimization": level, "chunk": int(chunk),
            "level_ms_per_item": {k: round(v * 1e3, 3) for k, v in level_ms.items()},
            "chunk_ms_per_item": {str(k): round(v * 1e3, 3) for k, v in per_item.items()}}


def _timed(fn: Any) -> float:
    import time

    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
