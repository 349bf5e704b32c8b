"""Fixtures for batch-screening tests: small random-init weights and a small folder of phantom scans.

Everything is tiny on purpose (64² model input, 8–10 slices of 64×72 voxels) so a whole job runs in a second or
two; the throughput target lives in bench/bench_screen.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from engine.models import create_model
from engine.phantom import make_phantom, write_dicom_series, write_nifti
from engine.preprocess import Preprocess
from engine.weights import save_weights

MODEL = "lightsqueeze_proposed"


def make_weights(folder: Path, seed: int = 0, input_size: tuple[int, int] = (64, 64)) -> Path:
    torch.manual_seed(seed)
    model = create_model(MODEL, num_classes=2, in_chans=1)
    pre = Preprocess.for_model(MODEL, input_size=input_size)
    save_weights(model, folder, model_name=MODEL, create_kwargs={"num_classes": 2, "in_chans": 1},
                 preprocess=pre, classes=["NonCOVID", "COVID"], metrics={"auc": 0.5},
                 data={"dataset": "random init (test)"})
    return folder


def make_phantom_folder(root: Path, n_dicom: int = 3) -> Path:
    """``n_dicom`` DICOM series (one folder each), a NIfTI volume, a text file and a corrupt ``.dcm``."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_dicom):
        ph = make_phantom(shape=(8, 64, 72), spacing=(6.0, 4.5, 4.5), seed=i, lesions=i % 2)
        write_dicom_series(ph.volume, root / f"patient{i}" / "ct", uid_seed=100 + i,
                           series_description=f"phantom {i}")
    ph = make_phantom(shape=(10, 56, 56), spacing=(5.0, 5.5, 5.5), seed=7, lesions=1)
    write_nifti(ph.volume, root / "volumes" / "chest.nii.gz")
    (root / "notes.txt").write_text("not a scan\n")
    (root / "patient0" / "broken.dcm").write_bytes(b"\x00garbage" * 32)
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under root, to prove a job did not touch its inputs."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            out[os.path.relpath(os.path.join(dirpath, f), root)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights") / MODEL)


@pytest.fixture(scope="session")
def phantom_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_folder(tmp_path_factory.mktemp("scans") / "ward")


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """One intra-op thread: these tiny batches gain nothing from two, and on a shared, busy 2-core machine an
    OpenMP pool spinning for a second core is 10-20x slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
