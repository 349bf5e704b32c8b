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
