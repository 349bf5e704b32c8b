"""Entry point of the frozen LungLens bundle (PyInstaller); not used by a source checkout or ``pip install``.

One program, two commands: ``lunglens`` (the viewer, ``viewer.app:main``) and ``lunglens-screen`` (batch
screening, ``engine.screen.cli:main``), chosen by the executable's name -- the bundle has one launcher of each
name over the same ``_internal`` folder (on Windows ``lunglens.exe`` is windowed, ``lunglens-screen.exe`` a
console program) -- or by ``lunglens screen ...``.

Before anything is imported it makes the run leave no files outside the install folder and the user's
LungLens folders: no ``__pycache__`` next to the bundled modules, and matplotlib's font cache (DICOM export's
colour maps, PDF reports) under the LungLens user cache instead of ``~/.config/matplotlib``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _prepare_environment() -> None:
    sys.dont_write_bytecode = True
    if "MPLCONFIGDIR" not in os.environ:
        from engine.phantom.demo import cache_dir   # $LUNGLENS_CACHE_DIR or the platform's user cache dir

        os.environ["MPLCONFIGDIR"] = str(cache_dir() / "matplotlib")


def _command(argv: list[str]) -> tuple[str, list[str]]:
    name = os.path.basename(argv[0]).lower()
    if name.endswith(".exe"):
        name = name[:-4]
    if name == "lunglens-screen":
        return "screen", argv[1:]
    if len(argv) > 1 and argv[1] == "screen":
        return "screen", argv[2:]
    return "viewer", argv[1:]


def main() -> int:
    sys.dont_write_bytecode = True     # also in the spawned children, which never reach _prepare_environment
    # First: spawned children (batch screening's workers, the viewer's ONNX export helper) re-enter here and
    # freeze_support runs them instead of the program.
    multiprocessing.freeze_support()
    _prepare_environment()
    command, args = _command(sys.argv)
    if command == "screen":
        from engine.screen.cli import main as screen_main
        return int(screen_main(args) or 0)
    from viewer.app import main as viewer_main
    return int(viewer_main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
