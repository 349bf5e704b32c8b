"""``lunglens-engine localize``: do the heatmaps point at the lesions?  (pointing game, energy in mask)

    lunglens-engine localize --model lightsqueeze_proposed --data ../shared/data/covid-lesion-masks-2d --json

The manifest needs a ``mask_binary`` column (binary PNG, 255 = lesion, same size as the image).  Every
explainer of ``engine.xai`` (or those given with --methods) is run for the COVID class; maps are brought back
to the source pixel grid with the weights' ``Preprocess.to_voxels``.  See ``engine.train.localize``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--weights", default="default", help="weights folder or 'default' (shipped weights)")
    p.add_argument("--data", required=True, type=Path, help="folder with manifest.csv incl. mask_binary")
    p.add_argument("--methods", default=None, help="comma-separated explainers (default: all)")
    p.add_argument("--tolerance", type=int, default=0, help="pointing-game tolerance in source pixels")
    p.add_argument("--split", default=None)
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--json", action="store_true")
    p.add_argument("--threads", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    from engine.io.errors import VolumeError
    from engine.train.localize import localize
    from engine.train.loop import json_clean
    from engine.train.runner import set_threads
    from engine.weights import WeightsError, load_default, load_weights

    set_threads(args.threads)
    try:
        from engine.models.registry import model_config
        name = model_config(args.model).name
        loaded = load_default(name) if args.weights == "default" else load_weights(args.weights)
        if loaded.name != name:
            raise WeightsError(f"the weights are for {loaded.name!r}, not {name!r}", loaded.path)
        methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
        result = localize(loaded, args.data, methods, tolerance=args.tolerance, split=args.split,
                          limit=args.limit)
    except (VolumeError, WeightsError, ValueError, KeyError) as exc:
        print(f"lunglens-engine localize: error: {exc}", file=sys.stderr)
        return 2
    result = {"model": name, "weights": str(loaded.path), "data": str(args.data), **result}
    if args.json:
        print(json.dumps(json_clean(result)))
    else:
        print(f"{name} on {args.data}: n={result['n']}, predicted COVID {result['predicted_covid_rate']:.2f}, "
              f"chance hit rate {result['chance_hit_rate']:.3f}")
        for m, r in result["methods"].items():
            if "error" in r:
                print(f"  {m:10s} n/a: {r['error']}")
                continue
            pg, en = r["pointing_game"], r["energy_in_mask"]
            print(f"  {m:10s} pointing {pg['mean']:.3f} [{pg['ci_low']:.3f}, {pg['ci_high']:.3f}]  "
                  f"energy {en['mean']:.3f} [{en['ci_low']:.3f}, {en['ci_high']:.3f}]")
    return 0
