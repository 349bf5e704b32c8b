"""The bundled demo scan: a COVID-like phantom chest CT, generated once into the user cache and reused.

Nothing is shipped and nothing from ``../shared`` is read: the series is made deterministically by
``make_phantom`` + ``write_dicom_series`` (fixed seed and UIDs), so every machine gets byte-identical files.
Set ``LUNGLENS_CACHE_DIR`` to put the cache elsewhere (tests do).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

DEMO_VERSION = 4
DEMO_SHAPE = (112, 512, 512)          # 280 mm of chest at 2.5 mm, 0.7 mm pixels (358 mm field of view)
DEMO_SPACING = (2.5, 0.7, 0.7)
DEMO_SEED = 2020
DEMO_LESIONS = 14


def cache_dir() -> Path:
    env = os.environ.get("LUNGLENS_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("lunglens"))


def demo_scan_path(*, shape: tuple[int, int, int] = DEMO_SHAPE, spacing: tuple[float, float, float] = DEMO_SPACING,
                   seed: int = DEMO_SEED) -> Path:
    """Folder of the demo DICOM series (generated on first use, a few seconds; then reused).

    Beside it, ``<folder>.lesions.nii.gz`` holds the exact lesion mask and ``<folder>.json`` the lesion list.
    """
    name = f"demo-chest-v{DEMO_VERSION}-s{seed}-{'x'.join(map(str, shape))}"
    root = cache_dir() / "demo"
    target = root / name
    marker = root / f"{name}.json"
    if target.is_dir() and marker.is_file():
        try:
            info = json.loads(marker.read_text())
            if info.get("n_files") == len(list(target.glob("*.dcm"))):
                return target
        except (OSError, ValueError):
            pass
    root.mkdir(parents=True, exist_ok=True)
    from engine.phantom.anatomy import make_phantom
    from engine.phantom.writers import write_dicom_series, write_nifti
    from engine.io.volume import Volume

    ph = make_phantom(shape, spacing, seed=seed, lesions=DEMO_LESIONS)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        paths = write_dicom_series(ph.volume, tmp / "series", uid_seed=f"lunglens-demo-{DEMO_VERSION}-{seed}",
                                   series_description="LungLens demo: synthetic COVID-like chest CT",
                                   patient_id="LUNGLENS-DEMO", patient_name="Demo^Phantom")
        mask = Volume(array=ph.lesion_mask, spacing=ph.volume.spacing, origin=ph.volume.origin,
                      direction=ph.volume.direction, is_hu=False, modality="SEG")
        write_nifti(mask, tmp / "lesions.nii.gz")
        info = {"version": DEMO_VERSION, "seed": seed, "shape": list(shape), "spacing": list(spacing),
                "n_files": len(paths),
                "lesions": [{"center": list(s.center), "radii_mm": list(s.radii_mm), "kind": s.kind, "hu": s.hu}
                            for s in ph.lesions]}
        if target.exists():            # stale or partial earlier attempt
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp / "series", target)
        except OSError:
            if not target.is_dir():    # not another process winning the race
                raise
        os.replace(tmp / "lesions.nii.gz", root / f"{name}.lesions.nii.gz")
        marker.write_text(json.dumps(info, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
