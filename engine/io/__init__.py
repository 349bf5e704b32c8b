"""CT volume I/O: ``discover(path)`` finds series, ``load_volume(...)`` reads one into a ``Volume`` in HU.

Readers never write to, move or lock a user's files.
"""

from engine.io.errors import (
    InconsistentSeriesError,
    LoadCancelled,
    NoPixelDataError,
    SymlinkLoopError,
    TruncatedFileError,
    UnreadableFileError,
    UnsupportedImageError,
    UnsupportedTransferSyntaxError,
    VolumeError,
)
from engine.io.volume import SeriesInfo, Volume
# Bound eagerly: ``engine.io.discover`` must be the function, not the submodule of the same name (a lazy
# ``__getattr__`` is shadowed by the submodule attribute once ``engine.io.discover`` has been imported anywhere).
from engine.io.discover import SeriesList, discover  # noqa: E402
from engine.io.load import load_volume  # noqa: E402
from engine.io.errors import DuplicateSlicesError, EmptyFileError, MissingSlicesError  # noqa: E402

__all__ = [
    "Volume", "SeriesInfo", "VolumeError", "UnreadableFileError", "TruncatedFileError", "NoPixelDataError",
    "UnsupportedTransferSyntaxError", "UnsupportedImageError", "InconsistentSeriesError", "SymlinkLoopError",
    "LoadCancelled", "EmptyFileError", "MissingSlicesError", "DuplicateSlicesError", "discover", "load_volume",
    "SeriesList",
]


def __getattr__(name: str):
    # discover/load_volume live in their own modules (filled in by the I/O work); imported lazily so the
    # contract above can be used before the readers exist.
    if name == "discover":
        from engine.io.discover import discover
        return discover
    if name == "load_volume":
        from engine.io.load import load_volume
        return load_volume
    raise AttributeError(name)
