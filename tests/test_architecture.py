"""Layer rules of the code base, enforced by import-linter contracts declared in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout and "BROKEN" not in result.stdout


def test_engine_never_imports_qt_textually() -> None:
    offenders = []
    for path in (REPO / "engine").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(
                q in stripped.split("#")[0] for q in ("PySide6", "pyqtgraph", "viewer")
            ):
                offenders.append(f"{path.relative_to(REPO)}: {stripped}")
    assert not offenders, offenders
