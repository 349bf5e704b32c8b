"""LungLens engine: everything a script, a server or the viewer needs, without Qt.

Subpackages (one idea each): ``io`` (discover/load CT volumes), ``phantom`` (synthetic chest CT),
``preprocess`` (each model's input definition and its inverse), ``models`` (registry of every network),
``xai`` (CAM family), ``weights`` (safetensors + manifest), ``train``, ``search`` (3-D DNAS), ``bench``,
``runtime`` (ONNX Runtime back-end), ``screen`` (batch screening), ``pacs`` (DICOM networking).
"""

import os as _os

__version__ = "0.1.0"

# ONNX Runtime (>= 1.29, Linux/macOS) otherwise writes a device id under ~/.cache/Microsoft and sends usage
# telemetry when it loads: LungLens works offline and writes only into its own user folders.  Set before any
# ``import onnxruntime`` (everything imports ``engine`` first); an explicit user setting wins.  The first name
# is the one ORT 1.29-1.32 reads, the second the one later releases read.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("ORT_TELEMETRY_DISABLED", "1")
