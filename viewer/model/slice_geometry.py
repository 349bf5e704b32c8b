"""Where a 2-D slice of a volume goes on screen: radiological orientation, mm scaling, orientation labels.

Patient coordinates are DICOM LPS: +X = patient's Left, +Y = Posterior, +Z = Superior.  ``Volume.direction``
(3x3 row-major) holds, in its columns, the LPS unit vectors of the array's x (column), y (row) and z (slice)
axes.  The radiological display convention puts

* axial:    patient's right on screen left, anterior up       (screen right = +X, screen down = +Y)
* coronal:  patient's right on screen left, superior up       (screen right = +X, screen down = -Z)
* sagittal: anterior on screen left, superior up              (screen right = +Y, screen down = -Z)

:class:`SliceGeometry` picks the flips (and, for unusual acquisitions, the transpose) that achieve this for any
volume direction, and maps between slice pixels (row, col) and scene coordinates (x right, y down, in mm).
It is Qt-free so the same maths serves the axial view now and MPR views later.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

# 2-D image formats carry no patient geometry: their orientation on screen is unknown
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"})

# letters for the negative and positive direction of each LPS axis
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))
AXIS_NAMES = {0: "axial", 1: "coronal", 2: "sagittal"}


def has_patient_geometry(volume) -> bool:
    """False for volumes read from plain images (PNG/JPEG...): their R/L, A/P labels would be guesses."""
    sources = getattr(volume, "source", ()) or ()
    if sources and all(str(p).lower().endswith(tuple(IMAGE_SUFFIXES)) for p in sources):
        return False
    return not any("without geometry" in w for w in getattr(volume, "warnings", ()))


def direction_matrix(direction: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """3x3 matrix whose columns are the LPS vectors of the array axes x, y, z."""
    return np.asarray(direction, dtype=float).reshape(3, 3)


def array_axis_vectors(direction: tuple[float, ...] | np.ndarray) -> dict[int, np.ndarray]:
    """LPS unit vector of each array axis, keyed by the numpy axis of a (z, y, x) array."""
    m = direction_matrix(direction)
    return {0: m[:, 2], 1: m[:, 1], 2: m[:, 0]}


def anatomical_label(vector: np.ndarray, min_component: float = 0.2) -> str:
    """Letters naming where ``vector`` points in the patient, strongest first (``L``, ``P``, or ``LA`` if oblique)."""
    v = np.asarray(vector, dtype=float)
    norm = float(np.linalg.norm(v))
    if norm == 0:
        return ""
    v = v / norm
    order = np.argsort(-np.abs(v), kind="stable")
    letters = [_LETTERS[i][1 if v[i] > 0 else 0] for i in order if abs(v[i]) >= min_component]
    return "".join(letters)


@dataclass(frozen=True)
class ScreenLabels:
    left: str
    right: str
    top: str
    bottom: str


@dataclass(frozen=True)
class SliceGeometry:
    """Placement of slices taken perpendicular to numpy ``axis`` of a (z, y, x) volume.

    A slice is the 2-D array ``volume.array`` indexed at ``axis`` (rows, cols): axial (axis 0) -> (y, x),
    coronal (axis 1) -> (z, x), sagittal (axis 2) -> (z, y).  Scene coordinates are mm, x to the right and y
    downwards, with the slice's top-left screen corner at (0, 0).
    """

    axis: int
    shape: tuple[int, int]                  # (rows, cols) of one slice
    spacing: tuple[float, float]            # (row, col) pixel size in mm
    row_vector: tuple[float, float, float]  # LPS direction of increasing row index
    col_vector: tuple[float, float, float]  # LPS direction of increasing column index
    transpose: bool                         # screen x follows rows (unusual acquisitions only)
    flip_x: bool                            # mirrored horizontally on screen
    flip_y: bool                            # mirrored vertically on screen

    @classmethod
    def for_axis(cls, shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float],
                 direction: tuple[float, ...], axis: int = 0) -> SliceGeometry:
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0 (axial), 1 (coronal) or 2 (sagittal), got {axis}")
        in_plane = [a for a in (0, 1, 2) if a != axis]   # (row axis, col axis) in numpy order
        vectors = array_axis_vectors(direction)
        row_vec, col_vec = vectors[in_plane[0]], vectors[in_plane[1]]
        transpose, flip_x, flip_y = _radiological_placement(row_vec, col_vec)
        return cls(
            axis=axis,
            shape=(int(shape_zyx[in_plane[0]]), int(shape_zyx[in_plane[1]])),
            spacing=(float(spacing_zyx[in_plane[0]]), float(spacing_zyx[in_plane[1]])),
            row_vector=tuple(float(c) for c in row_vec),  # type: ignore[arg-type]
            col_vector=tuple(float(c) for c in col_vec),  # type: ignore[arg-type]
            transpose=transpose, flip_x=flip_x, flip_y=flip_y,
        )

    # --- screen directions and labels -------------------------------------------------------------------
    def screen_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """LPS vectors pointing to screen right and screen down."""
        return _screen_vectors(np.array(self.row_vector), np.array(self.col_vector),
                               self.transpose, self.flip_x, self.flip_y)

    @property
    def labels(self) -> ScreenLabels:
        right, down = self.screen_vectors()
        return ScreenLabels(left=anatomical_label(-right), right=anatomical_label(right),
                            top=anatomical_label(-down), bottom=anatomical_label(down))

    # --- pixel <-> scene mapping ------------------------------------------------------------------------
    @property
    def affine(self) -> tuple[float, float, float, float, float, float]:
        """(m11, m12, m21, m22, dx, dy) with ``scene_x = m11*col + m21*row + dx``, ``scene_y = m12*col + m22*row + dy``.

        ``col``/``row`` are continuous pixel coordinates (pixel (r, c) covers [c, c+1) x [r, r+1)); this is the
        layout of Qt's ``QTransform(m11, m12, m21, m22, dx, dy)`` applied to an image item in row-major order.
        """
        rows, cols = self.shape
        sr, sc = self.spacing
        # unflipped, untransposed: x = col*sc, y = row*sr
        if not self.transpose:
            m11, m21, m12, m22 = sc, 0.0, 0.0, sr
            width, height = cols * sc, rows * sr
        else:
            m11, m21, m12, m22 = 0.0, sr, sc, 0.0
            width, height = rows * sr, cols * sc
        dx = dy = 0.0
        if self.flip_x:
            m11, m21, dx = -m11, -m21, width
        if self.flip_y:
            m12, m22, dy = -m12, -m22, height
        return (m11, m12, m21, m22, dx, dy)

    @property
    def scene_size(self) -> tuple[float, float]:
        """(width, height) of a slice on screen in mm."""
        rows, cols = self.shape
        sr, sc = self.spacing
        return (rows * sr, cols * sc) if self.transpose else (cols * sc, rows * sr)

    @property
    def scene_center(self) -> tuple[float, float]:
        w, h = self.scene_size
        return (w / 2, h / 2)

    def to_scene(self, row: float, col: float) -> tuple[float, float]:
        m11, m12, m21, m22, dx, dy = self.affine
        return (m11 * col + m21 * row + dx, m12 * col + m22 * row + dy)

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Continuous (row, col) of a scene point; floor() gives the pixel index."""
        m11, m12, m21, m22, dx, dy = self.affine
        a = np.array([[m11, m21], [m12, m22]])
        col, row = np.linalg.solve(a, np.array([x - dx, y - dy]))
        return float(row), float(col)

    def pixel_at(self, x: float, y: float) -> tuple[int, int] | None:
        """Integer (row, col) under a scene point, or None outside the slice."""
        row, col = self.to_pixel(x, y)
        r, c = int(np.floor(row)), int(np.floor(col))
        if 0 <= r < self.shape[0] and 0 <= c < self.shape[1]:
            return r, c
        return None


def _screen_vectors(row_vec: np.ndarray, col_vec: np.ndarray, transpose: bool, flip_x: bool,
                    flip_y: bool) -> tuple[np.ndarray, np.ndarray]:
    right, down = (row_vec, col_vec) if transpose else (col_vec, row_vec)
    return (-right if flip_x else right), (-down if flip_y else down)


def _desired_screen_vectors(row_vec: np.ndarray, col_vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radiological screen-right and screen-down LPS vectors for the plane spanned by the two axes."""
    normal = np.cross(row_vec, col_vec)
    plane = int(np.argmax(np.abs(normal)))   # 2: axial, 1: coronal, 0: sagittal
    x, y, z = np.eye(3)
    if plane == 2:
        return x, y
    if plane == 1:
        return x, -z
    return y, -z


def _radiological_placement(row_vec: np.ndarray, col_vec: np.ndarray) -> tuple[bool, bool, bool]:
    """(transpose, flip_x, flip_y) that best matches the radiological convention; identity wins ties."""
    want_right, want_down = _desired_screen_vectors(row_vec, col_vec)
    best, best_score = (False, False, False), -np.inf
    for transpose, flip_x, flip_y in itertools.product((False, True), repeat=3):
        right, down = _screen_vectors(row_vec, col_vec, transpose, flip_x, flip_y)
        score = float(right @ want_right + down @ want_down)
        if score > best_score + 1e-9:
            best, best_score = (transpose, flip_x, flip_y), score
    return best
