"""``run_benchmark``: the registry-driven efficiency benchmark (params, MACs, latency, memory, GEMM fraction).

For every selected model (``list_models()``; giant ones only with ``include_giant``) and back-end:

1. build it — with its default, evaluated weights when they exist (``weights="auto"``), else random init in
   the papers' configuration (``paper_in_chans`` / ``paper_num_classes``) so counts match the spec;
2. count trainable and Keras-style parameters and the MACs of one item over all kernel dims
   (``engine.bench.macs``);
3. build a :class:`engine.runtime.Predictor` on the back-end ("onnx" = ONNX Runtime fp32 through the same
   cached, verified export the app uses; "torch" = the app's torch path), then time ``predict`` at each batch
   size with warm-up and fixed threads (p50/p90/min), and sample peak RSS;
4. relate the time to this machine's fp32 GEMM peak, measured in the same run.

A model that fails (export impossible, out of memory, ...) gives a row with ``error`` set; the run goes on.
``progress(done, total, message)`` is called before each step and ``on_row(row)`` after each row;
``cancel`` (a callable returning True, or a ``threading.Event``) stops the run between and inside timings —
the partial report comes back with ``cancelled=True``.
"""

from __future__ import annotations

import datetime as _dt
import gc
import logging
import os
import platform
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from engine.bench.gemm import fraction_of_peak, measure_gemm_peak
from engine.bench.report import BenchReport, BenchRow, load_references
from engine.bench.timing import Cancelled, PeakMemory, time_calls, torch_threads

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "torch")
ProgressFn = Callable[[int, int, str], None]


def select_models(models: Iterable[str] | None = None, *, include_giant: bool = False,
                  spatial_dims: int | None = None) -> list[str]:
    """Registry names to run.  Wildcards (``efficientnet_*``) respect ``include_giant``; an exact name is always
    run (asking for ``vgg16`` by name means it).  Unknown names raise ``KeyError`` listing close matches."""
    from engine.models.registry import list_models, model_config

    if not models:
        return list_models(spatial_dims=spatial_dims, include_giant=include_giant)
    out: list[str] = []
    for item in models:
        if any(ch in item for ch in "*?["):
            matched = list_models(item, spatial_dims=spatial_dims, include_giant=include_giant)
            if not matched and not list_models(item):
                raise KeyError(f"no registered model matches {item!r}; see `lunglens-engine models`")
            out += matched
        else:
            out.append(model_config(item).name)
    return list(dict.fromkeys(out))


def _is_cancelled(cancel: Any) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    return lambda: bool(cancel())


def machine_info(threads: int) -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import onnxruntime

    info = {
        "cpu": cpu, "cpus": os.cpu_count(), "threads": threads, "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
    try:
        info["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["loadavg_before"] = None
    return info


def _metrics(manifest: dict[str, Any] | None) -> dict[str, float | None]:
    """accuracy / sensitivity / specificity / auc from a manifest's ``metrics`` (test split preferred)."""
    found: dict[str, float | None] = {"accuracy": None, "sensitivity": None, "specificity": None, "auc": None}
    if not manifest:
        return found
    metrics = manifest.get("metrics") or {}
    aliases = {
        "accuracy": ("accuracy", "acc", "test_accuracy"),
        "sensitivity": ("sensitivity", "recall", "sens", "covid_sensitivity", "tpr"),
        "specificity": ("specificity", "spec", "tnr", "covid_specificity"),
        "auc": ("auc", "roc_auc", "covid_auc", "auroc"),
    }
    scopes: list[dict[str, Any]] = []
    for key in ("test", "val", "validation", "valid"):
        if isinstance(metrics.get(key), dict):
            scopes.append(metrics[key])
    scopes.append(metrics)
    for name, keys in aliases.items():
        for scope in scopes:
            for k in keys:
                v = scope.get(k)
                if isinstance(v, dict):   # {"value": x, "ci": [...]} or per-class with the COVID class
                    v = v.get("value", v.get("mean", v.get("COVID", v.get("covid"))))
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
                    found[name] = float(v) / (100.0 if v > 1.0 else 1.0)
                    break
            if found[name] is not None:
                break
    return found


def _count(model: torch.nn.Module, input_shape: tuple[int, ...], row: BenchRow,
           memo: dict[Any, tuple[Any, ...]]) -> None:
    """Parameters and MACs into ``row``; ``memo`` keeps them per (weights, shape) so back-ends share one count."""
    key = (row.weights, row.weights_sha256, input_shape)
    if key in memo:
        row.params_trainable, row.params_keras, row.size_mb, row.macs, notes = memo[key]
        row.notes += notes
        return
    _count_now(model, input_shape, row)
    memo[key] = (row.params_trainable, row.params_keras, row.size_mb, row.macs, list(row.notes))


def _count_now(model: torch.nn.Module, input_shape: tuple[int, ...], row: BenchRow) -> None:
    try:
        from engine.bench.macs import count_macs, count_params
    except ImportError as exc:
        row.notes.append(f"parameter/MAC counter unavailable ({exc})")
        row.params_trainable = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
        row.size_mb = row.params_trainable * 4 / 2**20
        return
    pc = count_params(model)
    row.params_trainable = int(pc.trainable)
    row.params_keras = int(pc.keras_style)
    row.size_mb = row.params_trainable * 4 / 2**20
    try:
        row.macs = float(count_macs(model, (1, *input_shape)))
    except Exception as exc:  # noqa: BLE001 - a counter failure must not lose the timing
        row.notes.append(f"MAC count failed: {type(exc).__name__}: {exc}")


def _build(name: str, weights: str, in_chans: int | None, num_classes: int | None,
           ) -> tuple[torch.nn.Module, Any, dict[str, Any] | None, str]:
    """(model, preprocess, manifest, weights kind)."""
    from engine.models.registry import create_model, model_config

    config = model_config(name)
    if weights in ("auto", "default"):
        manifest = None
        try:
            from engine.weights import find_default_weights, load_weights

            manifest = find_default_weights(name)
        except ImportError:
            pass
        if manifest is not None:
            loaded = load_weights(manifest["location"])
            return loaded.model, loaded.preprocess, loaded.manifest, "default"
        if weights == "default":
            raise LookupError(f"no default weights for {name!r}")
    torch.manual_seed(0)   # deterministic random weights -> stable export cache key across runs
    ic = int(in_chans or config.paper_in_chans)
    nc = int(num_classes or config.paper_num_classes)
    model = create_model(name, num_classes=nc, in_chans=ic).eval()
    return model, None, None, "random"


def run_benchmark(models: Sequence[str] | None = None, *, backends: Sequence[str] = BACKENDS,
                  batch_sizes: Sequence[int] = (1, 16), threads: int | None = 2, include_giant: bool = False,
                  input_size: str = "native", weights: str = "auto", in_chans: int | None = None,
                  num_classes: int | None = None, warmup: int = 2, min_repeats: int = 5, max_repeats: int = 30,
                  budget_s: float = 2.0, measure_gemm: bool = True, gemm_sizes: Sequence[int] = (1024, 2048),
                  cache_dir: str | None = None,
                  progress: ProgressFn | None = None, on_row: Callable[[BenchRow], None] | None = None,
                  cancel: Any = None) -> BenchReport:
    """Benchmark registered models; see the module docstring.

    ``input_size``: "native" (the paper's input, ``ModelConfig.input_size``) or "test" (the reduced CI size,
    ``test_input_size``, when a model has one).  ``weights``: "auto" (default weights if shipped, else random),
    "random" or "default" (models without weights are skipped with an error row).  ``threads``: fixed for torch
    and ONNX Runtime alike (None = all CPUs this process may use).
    """
    from engine.models.registry import model_config
    from engine.runtime import Predictor
    from engine.runtime.export import default_cache_dir
    from engine.runtime.session import default_threads

    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"unknown backend {b!r}; choose from {BACKENDS}")
    if input_size not in ("native", "test"):
        raise ValueError("input_size must be 'native' or 'test'")
    if weights not in ("auto", "random", "default"):
        raise ValueError("weights must be 'auto', 'random' or 'default'")
    batch_sizes = sorted({int(b) for b in batch_sizes})
    if not batch_sizes or batch_sizes[0] < 1:
        raise ValueError("batch sizes must be positive integers")
    threads = int(threads or default_threads())
    names = select_models(models, include_giant=include_giant)
    is_cancelled = _is_cancelled(cancel)
    bench_cache = cache_dir or str(default_cache_dir() / "bench")

    t_start = time.perf_counter()
    report = BenchReport(references=load_references(), machine=machine_info(threads),
                         started=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
                         settings={"models": names, "backends": list(backends), "batch_sizes": batch_sizes,
                                   "threads": threads, "include_giant": include_giant, "input_size": input_size,
                                   "weights": weights, "in_chans": in_chans, "num_classes": num_classes,
                                   "warmup": warmup, "min_repeats": min_repeats, "budget_s": budget_s})
    total = len(names) * len(backends) + (1 if measure_gemm else 0)
    done = 0

    def step(msg: str) -> None:
        if progress is not None:
            progress(done, total, msg)

    try:
        if measure_gemm:
            step(f"measuring fp32 GEMM peak ({threads} threads)")
            report.gemm = measure_gemm_peak(threads=threads, n=tuple(int(n) for n in gemm_sizes))
            done += 1
        for name in names:
            config = model_config(name)
            memo: dict[Any, tuple[Any, ...]] = {}
            for backend in backends:
                if is_cancelled():
                    raise Cancelled
                step(f"{name} on {backend}")
                row = _bench_one(name, config, backend, batch_sizes=batch_sizes, threads=threads,
                                 input_size=input_size, weights=weights, in_chans=in_chans,
                                 num_classes=num_classes, warmup=warmup, min_repeats=min_repeats,
                                 max_repeats=max_repeats, budget_s=budget_s, cache_dir=bench_cache,
                                 is_cancelled=is_cancelled, predictor_cls=Predictor, memo=memo)
                if report.gemm is not None and row.macs:
                    for b, stats in row.latency.items():
                        frac = fraction_of_peak(row.macs, stats.p50_ms_per_item, report.gemm.gflops)
                        if frac is not None:
                            row.gemm_fraction[b] = frac
                report.rows.append(row)
                done += 1
                if on_row is not None:
                    on_row(row)
                gc.collect()
    except Cancelled:
        report.cancelled = True
    report.seconds = time.perf_counter() - t_start
    try:
        report.machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        report.machine["loadavg_after"] = None
    if progress is not None:
        progress(done, total, "cancelled" if report.cancelled else "done")
    return report


def _bench_one(name: str, config: Any, backend: str, *, batch_sizes: list[int], threads: int, input_size: str,
               weights: str, in_chans: int | None, num_classes: int | None, warmup: int, min_repeats: int,
               max_repeats: int, budget_s: float, cache_dir: str, is_cancelled: Callable[[], bool],
               predictor_cls: Any, memo: dict[Any, tuple[Any, ...]]) -> BenchRow:
    row = BenchRow(model=name, backend=backend, family=config.family, paper=config.paper,
                   spatial_dims=config.spatial_dims, threads=threads, giant=config.giant)
    predictor = model = None
    try:
        with PeakMemory() as mem, torch_threads(threads):
            t0 = time.perf_counter()
            model, preprocess, manifest, kind = _build(name, weights, in_chans, num_classes)
            row.weights = kind
            if manifest is not None:
                row.weights_sha256 = manifest.get("sha256")
                for key, value in _metrics(manifest).items():
                    setattr(row, key, value)
            size = config.input_size
            if input_size == "test" and config.test_input_size:
                size = config.test_input_size
            if preprocess is not None:
                ic = int(preprocess.in_chans)
                size = tuple(preprocess.input_size) if input_size == "native" else size
            else:
                first = next((m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))),
                             None)
                ic = int(first.in_channels) if first is not None else int(in_chans or config.paper_in_chans)
            shape = (ic, *(int(s) for s in size))
            row.input_shape = shape
            _count(model, shape, row, memo)
            if row.sensitivity is not None and row.params_trainable:
                row.sens_per_mparam = 100.0 * row.sensitivity / (row.params_trainable / 1e6)
            predictor = predictor_cls.from_model(model, input_shape=shape, backend=backend, threads=threads,
                                                 weights_sha256=row.weights_sha256, cache_dir=cache_dir,
                                                 max_batch=max(batch_sizes))
            row.num_classes = predictor.num_classes
            row.build_seconds = time.perf_counter() - t0
            if predictor.backend == "torch" and predictor.channels_last:
                row.notes.append("torch: channels_last")
            if predictor.export is not None and predictor.export.from_cache:
                row.notes.append("onnx: export from cache")
            gen = np.random.default_rng(0)
            for b in batch_sizes:
                x = gen.standard_normal((b, *shape), dtype=np.float32)
                row.latency[b] = time_calls(lambda: predictor.predict(x), batch=b, warmup=warmup,
                                            min_repeats=min_repeats, max_repeats=max_repeats, budget_s=budget_s,
                                            cancelled=is_cancelled)
        row.peak_mem_mb = mem.peak_mb
    except Cancelled:
        raise
    except MemoryError:
        row.error = "out of memory"
    except Exception as exc:  # noqa: BLE001 - one model's failure must not end the benchmark
        first_line = (str(exc).strip().splitlines() or [""])[0]
        row.error = f"{type(exc).__name__}: {first_line[:400]}"
        log.warning("benchmark of %s on %s failed: %s", name, backend, row.error)
    finally:
        if predictor is not None:
            predictor.close()
        del predictor, model
    return row
