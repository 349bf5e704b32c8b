"""LungLens engine: everything a script, a server or the viewer needs, without Qt.

Subpackages (one idea each): ``io`` (discover/load CT volumes), ``phantom`` (synthetic chest CT),
``preprocess`` (each model's input definition and its inverse), ``models`` (registry of every network),
``xai`` (CAM family), ``weights`` (safetensors + manifest), ``train``, ``search`` (3-D DNAS), ``bench``,
``runtime`` (ONNX Runtime back-end), ``screen`` (batch screening), ``pacs`` (DICOM networking).
"""

__version__ = "0.1.0"
