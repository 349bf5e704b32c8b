"""Synthetic chest-CT phantoms with known lesions: demo data, tests and 3-D training.

``make_phantom(shape, spacing, seed, lesions)`` -> ``Phantom`` (volume in HU, exact lesion and lung masks);
``write_dicom_series`` / ``write_nifti`` write it as real files; ``demo_scan_path()`` is the cached demo series.
"""

from engine.phantom.anatomy import LESION_HU_RANGE, LESION_KINDS, LesionSpec, Phantom, make_phantom
from engine.phantom.demo import demo_scan_path
from engine.phantom.writers import write_dicom_series, write_nifti

__all__ = ["make_phantom", "Phantom", "LesionSpec", "LESION_KINDS", "LESION_HU_RANGE", "write_dicom_series",
           "write_nifti", "demo_scan_path"]
