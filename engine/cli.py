"""``lunglens-engine``: a thin dispatcher over the engine's subcommands.

Each subcommand lives next to the code it drives, in a module exposing ``add_arguments(parser)`` and
``run(args) -> int``.  Modules are imported lazily so ``lunglens-engine --help`` stays fast and a broken
optional dependency only breaks its own subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("engine.models.cli", "list registered networks: params, MACs, paper"),
    "phantom": ("engine.phantom.cli", "write a synthetic chest-CT phantom as DICOM series / NIfTI"),
    "info": ("engine.io.cli", "discover series under a path and print their headers"),
    "train": ("engine.train.cli_train", "train a registered model on a manifest.csv folder"),
    "evaluate": ("engine.train.cli_evaluate", "evaluate a model (default or given weights) on a dataset"),
    "cv": ("engine.train.cli_cv", "patient-wise k-fold cross-validation"),
    "hpo": ("engine.train.cli_hpo", "Bayesian hyper-parameter search (Optuna)"),
    "localize": ("engine.train.cli_localize", "heatmap-in-lesion-mask statistics per explainer"),
    "search": ("engine.search.cli", "CovidNet3D differentiable architecture search"),
    "bench": ("engine.bench.cli", "efficiency benchmark: params, MACs, latency, GEMM peak"),
    "export": ("engine.runtime.cli", "export weighted models to ONNX for the fast back-end"),
    "screen": ("engine.screen.cli", "batch-screen folders of scans (same as lunglens-screen)"),
    "pacs": ("engine.pacs.cli", "query/retrieve/send against a DICOM server"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lunglens-engine", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version="lunglens-engine 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # prints help / errors / version
        parser.print_help()
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"lunglens-engine: '{name}' is not available in this build ({exc})", file=sys.stderr)
            return 2
        raise
    sub_parser = argparse.ArgumentParser(prog=f"lunglens-engine {name}", description=help_text)
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
