"""LungLens writes only into its own user folders -- also through its libraries (fast; no bundle needed).

The installer promises that uninstalling leaves nothing behind except the user's LungLens caches/settings.  A
library that drops files elsewhere breaks that: ONNX Runtime >= 1.29 writes a telemetry device id under
``~/.cache/Microsoft`` (and phones home) unless told not to, which ``engine`` does on import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = """
import numpy as np
import engine                                   # first, as every LungLens entry point does
import onnxruntime as ort
from onnx import TensorProto, helper
from engine.runtime.session import make_session
from engine.phantom.demo import cache_dir

graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
path = cache_dir() / "relu.onnx"
path.parent.mkdir(parents=True, exist_ok=True)
path.write_bytes(model.SerializeToString())
print(make_session(path).run(None, {"x": np.array([-1.0], np.float32)})[0][0])
"""


def test_engine_and_onnxruntime_write_nothing_outside_the_lunglens_folders(tmp_path) -> None:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "OMP_WAIT_POLICY")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "0.0"                     # the session really ran
    written = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    assert written == [".cache/lunglens/relu.onnx"], written
    assert not list(tmp.iterdir()), sorted(p.name for p in tmp.iterdir())


def test_an_explicit_user_choice_about_ort_telemetry_is_kept() -> None:
    env = dict(os.environ, ORT_DISABLE_TELEMETRY="0", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", "import engine, os; print(os.environ['ORT_DISABLE_TELEMETRY'])"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "0", out.stderr
