"""A deterministic, anatomically plausible chest-CT phantom with exactly known lesions.

Everything is computed with numpy in physical millimetres, so the same seed gives the same anatomy whatever the
grid: non-square in-plane shapes and non-isotropic spacing are fine.  The anatomy is scaled to fit the field of
view (a 96x96 grid at 1 mm gets a small chest that still fills the image), and varies with the seed (body size and
shape, lung size, heart position, diaphragm height, rib phase, vessel tree, noise).

Conventions are those of ``engine.io.Volume``: array (z, y, x) in HU, z index 0 = most inferior slice, column x
increases towards the patient's left, row y increases towards posterior (LPS, identity direction).  Displayed
radiologically (row 0 at the top), the heart therefore sits on the right side of the image.

Tissue values (HU, before noise): air -1000, lung parenchyma about -850 (seed-varied, ``lung_hu``), fat -100,
soft tissue/muscle/blood +40, liver +60, cancellous bone +250, cortical bone +800.  Ground-glass lesions
(``'ggo'``) are -600..-300 HU and keep the vessels visible through them; consolidations are -20..+50 HU and hide
them.  ``Phantom.lesion_mask`` is exactly the set of voxels a lesion changed (lesion ellipsoid within the lung).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from engine.io.volume import Volume

LESION_KINDS = ("ggo", "consolidation")
# Nominal HU range of each lesion kind (random lesions draw their HU from it; the texture added on top is small).
LESION_HU_RANGE = {"ggo": (-600.0, -300.0), "consolidation": (-20.0, 50.0)}

_ANATOMY_DEFAULTS: dict[str, object] = {
    "lung_hu": None,          # parenchyma HU; None -> seed-varied around -850
    "noise_hu": None,         # image noise standard deviation; None -> seed-varied 8..16
    "vessels": True,          # pulmonary vessel trees
    "airways": True,          # trachea and main bronchi
    "ribs": True,
    "table": True,            # the scanner couch under the patient
    "body_scale": 1.0,        # multiplies the (seed-varied) body size; the result is still clipped to the FOV
    "fit_fov": True,          # shrink the chest to fit a small field of view (True) or keep adult size (False)
}


@dataclass(frozen=True)
class LesionSpec:
    """One lesion: an axis-aligned ellipsoid (clipped to the lung) with a nominal HU value."""

    center: tuple[int, int, int]              # voxel (z, y, x)
    radii_mm: tuple[float, float, float]      # (z, y, x) semi-axes in mm
    kind: str = "ggo"                          # 'ggo' | 'consolidation'
    hu: float | None = None                    # nominal HU; None -> middle of the kind's range

    def __post_init__(self) -> None:
        if self.kind not in LESION_KINDS:
            raise ValueError(f"LesionSpec.kind must be one of {LESION_KINDS}, got {self.kind!r}")
        if len(self.center) != 3 or len(self.radii_mm) != 3 or min(self.radii_mm) <= 0:
            raise ValueError("LesionSpec needs center=(z, y, x) voxels and three positive radii_mm")


@dataclass
class Phantom:
    volume: Volume                     # HU, float32 (integer-valued), z index 0 = inferior
    lesion_mask: np.ndarray            # uint8 (z, y, x): 1 where a lesion changed the voxel
    lung_mask: np.ndarray              # uint8 (z, y, x): 1 in both lungs (vessels and lesions inside included)
    lesions: list[LesionSpec] = field(default_factory=list)   # the lesions actually drawn (hu filled in)
    seed: int = 0

    @property
    def has_lesions(self) -> bool:
        return bool(self.lesion_mask.any())


# --------------------------------------------------------------------------------------------------- helpers
def _grid(shape, spacing):
    z, y, x = shape
    sz, sy, sx = spacing
    zz = ((np.arange(z, dtype=np.float32) - (z - 1) / 2) * sz).reshape(z, 1, 1)
    yy = ((np.arange(y, dtype=np.float32) - (y - 1) / 2) * sy).reshape(1, y, 1)
    xx = ((np.arange(x, dtype=np.float32) - (x - 1) / 2) * sx).reshape(1, 1, x)
    return zz, yy, xx


def _draw_segment(arr, lung, p0, p1, r0, r1, value, origin_mm, spacing, mode="set"):
    """Paint a tapered cylinder from p0 to p1 (mm, zyx) into ``arr`` where ``lung`` is set."""
    sp = np.asarray(spacing, dtype=np.float32)
    p0 = np.asarray(p0, np.float32)
    p1 = np.asarray(p1, np.float32)
    rmax = max(r0, r1)
    lo = np.floor((np.minimum(p0, p1) - rmax - origin_mm) / sp).astype(int)
    hi = np.ceil((np.maximum(p0, p1) + rmax - origin_mm) / sp).astype(int) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, arr.shape)
    if np.any(hi <= lo):
        return
    zs = (np.arange(lo[0], hi[0], dtype=np.float32) * sp[0] + origin_mm[0]).reshape(-1, 1, 1)
    ys = (np.arange(lo[1], hi[1], dtype=np.float32) * sp[1] + origin_mm[1]).reshape(1, -1, 1)
    xs = (np.arange(lo[2], hi[2], dtype=np.float32) * sp[2] + origin_mm[2]).reshape(1, 1, -1)
    d = p1 - p0
    L2 = float(d @ d) or 1e-6
    t = ((zs - p0[0]) * d[0] + (ys - p0[1]) * d[1] + (xs - p0[2]) * d[2]) / L2
    t = np.clip(t, 0.0, 1.0)
    dist2 = (zs - p0[0] - t * d[0]) ** 2 + (ys - p0[1] - t * d[1]) ** 2 + (xs - p0[2] - t * d[2]) ** 2
    r = r0 + (r1 - r0) * t
    inside = dist2 <= r * r
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    if lung is not None:
        inside &= lung[sl]
    sub = arr[sl]
    if mode == "set":
        sub[inside] = value
    else:
        sub[inside] = np.maximum(sub[inside], value)


def _rasterize_tree(out: np.ndarray, segments, origin_mm, spacing) -> None:
    """Set ``out`` inside tapered tubes (p0, p1, r0, r1 in mm, zyx): balls stamped at half-voxel steps.

    Vectorised: points are grouped by radius and each group is stamped with one precomputed ellipsoidal
    stencil, so thousands of segments cost a few numpy calls, not thousands.
    """
    if not segments:
        return
    sp = np.asarray(spacing, np.float64)
    step = 0.5 * float(sp.min())
    p0 = np.array([s[0] for s in segments], np.float64)
    p1 = np.array([s[1] for s in segments], np.float64)
    r0 = np.array([s[2] for s in segments], np.float64)
    r1 = np.array([s[3] for s in segments], np.float64)
    n = np.maximum(2, np.ceil(np.linalg.norm(p1 - p0, axis=1) / step).astype(int) + 1)
    seg = np.repeat(np.arange(len(segments)), n)
    t = np.concatenate([np.linspace(0.0, 1.0, k) for k in n])
    pts = p0[seg] + (p1 - p0)[seg] * t[:, None]
    rad = r0[seg] + (r1 - r0)[seg] * t
    vox = np.rint((pts - np.asarray(origin_mm, np.float64)) / sp).astype(np.int64)
    q = np.maximum(np.rint(rad / step), 1).astype(np.int64)     # radius in half-voxel units of the finest axis
    shape = np.asarray(out.shape)
    flat = out.reshape(-1)
    strides = np.array([out.shape[1] * out.shape[2], out.shape[2], 1], np.int64)
    for qv in np.unique(q):
        r = qv * step
        ext = np.ceil(r / sp).astype(int)
        gz, gy, gx = np.meshgrid(*[np.arange(-e, e + 1) for e in ext], indexing="ij")
        keep = (gz * sp[0]) ** 2 + (gy * sp[1]) ** 2 + (gx * sp[2]) ** 2 <= r * r
        off = np.stack([gz[keep], gy[keep], gx[keep]], 1)
        c = vox[q == qv]
        idx = (c[:, None, :] + off[None, :, :]).reshape(-1, 3)
        ok = np.all((idx >= 0) & (idx < shape), axis=1)
        flat[idx[ok] @ strides] = True


# --------------------------------------------------------------------------------------------------- phantom
def make_phantom(shape: tuple[int, int, int] = (64, 256, 256),
                 spacing: tuple[float, float, float] = (5.0, 1.4, 1.4),
                 seed: int = 0,
                 lesions: int | list[LesionSpec] | None = None,
                 **anatomy) -> Phantom:
    """Build a chest-CT phantom.

    shape/spacing are (z, y, x) voxels/mm.  ``lesions``: None or 0 for a healthy chest, an int for that many random
    COVID-like lesions (peripheral, lower and posterior lung preferred, mostly ground-glass), or a list of
    ``LesionSpec``.  ``**anatomy`` overrides the keys of ``_ANATOMY_DEFAULTS`` (unknown keys raise TypeError).
    """
    unknown = set(anatomy) - set(_ANATOMY_DEFAULTS)
    if unknown:
        raise TypeError(f"make_phantom got unknown anatomy option(s) {sorted(unknown)}; "
                        f"known: {sorted(_ANATOMY_DEFAULTS)}")
    opt = {**_ANATOMY_DEFAULTS, **anatomy}
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive ints (z, y, x), got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive mm values (z, y, x), got {spacing}")
    rng = np.random.default_rng(seed)
    Z, Y, X = shape
    sz, sy, sx = spacing

    # ---- seed-varied anatomy parameters
    A = 165.0 * rng.uniform(0.9, 1.1) * float(opt["body_scale"])    # body half-width (mm, x)
    B = A * rng.uniform(0.66, 0.78)                                  # body half-depth (mm, y)
    if opt["fit_fov"]:
        k = min(1.0, 0.46 * X * sx / A, 0.42 * Y * sy / B)
        A, B = A * k, B * k
    lung_hu = float(opt["lung_hu"]) if opt["lung_hu"] is not None else float(rng.uniform(-880, -820))
    noise_hu = float(opt["noise_hu"]) if opt["noise_hu"] is not None else float(rng.uniform(8, 16))
    lung_w = rng.uniform(0.35, 0.40)
    lung_h = rng.uniform(0.64, 0.72)
    heart_u, heart_v = rng.uniform(0.08, 0.18), rng.uniform(-0.28, -0.15)
    heart_r = rng.uniform(0.30, 0.36)
    dome0, dome_h = rng.uniform(0.05, 0.12), rng.uniform(0.10, 0.16)
    rib_phase = rng.uniform(0, 1)
    yshift = B * 0.08                                                # body sits a little anterior of centre

    zz, yy, xx = _grid(shape, spacing)
    zext = max(Z * sz, 1e-3)
    tz = (zz.ravel() / zext + 0.5).astype(np.float64)               # 0 inferior .. 1 superior, per slice
    zmm_all = (zz.ravel() - zz.ravel()[0]).astype(np.float64)
    u = (xx / A)[0]                                                  # (1, X)
    v = ((yy + yshift) / B)[0]                                       # (Y, 1), + posterior
    ab = A / B
    fat_t = rng.uniform(0.07, 0.12)
    cav_a, cav_b = (0.86 - fat_t), (0.82 - fat_t)
    heart_t, heart_rt = 0.33 + 0.5 * dome0, 0.17
    vr = 0.13
    vb = (u / vr) ** 2 + ((v - 0.64) / vr / ab) ** 2
    canal = (u / 0.05) ** 2 + ((v - 0.86) / 0.06) ** 2 <= 1
    post = ((np.abs(u) < 0.12) & (np.abs(v - 0.86) < 0.09)) | ((np.abs(u) < 0.025) & (v > 0.86) & (v < 1.0))
    desc2 = ((u - 0.13) / 0.075) ** 2 + ((v - 0.47) / 0.075 / ab) ** 2 <= 1
    asc2 = ((u - 0.02) / 0.08) ** 2 + ((v + 0.12) / 0.08 / ab) ** 2 <= 1
    arch2 = (np.abs(u - 0.07) < 0.12) & (v > -0.2) & (v < 0.5)
    medgap = ((np.abs(u) < 0.10 + 0.05 * (v < 0)) & (v > -0.9)) | ((np.abs(u) < 0.22) & (v > 0.50))
    dome_rb = np.clip(1 - ((u + 0.45) / 0.5) ** 2 - (v / 0.8) ** 2, 0, 1)
    dome_lb = np.clip(1 - ((u - 0.45) / 0.5) ** 2 - (v / 0.8) ** 2, 0, 1)
    dome_r = dome0 + 0.04 + dome_h * dome_rb
    dome_l = dome0 + dome_h * dome_lb
    au22, av22 = np.abs(u) ** 2.2, np.abs(v) ** 2.2
    pitch = 26.0 * A / 165.0
    slope = 18.0 * A / 165.0                                         # ribs: mm lower at the front than the back
    thick = min(0.5, max(6.0 * A / 165.0, 0.6 * sz) / pitch)         # visible even with thick slices
    rib_ok = ~((np.abs(u) < 0.2) & (v > 0.4))
    disc_w = 25.0 * A / 165.0
    vol = np.empty(shape, dtype=np.float32)
    lung = np.zeros(shape, dtype=bool)
    for k in range(Z):
        t = float(tz[k])
        sl = vol[k]
        sl.fill(-1000.0)
        bscale = 1.0 - 0.06 * t
        body = (au22 + av22) <= bscale ** 2.2                        # superellipse; narrower at the top
        sl[body] = -100.0                                            # subcutaneous fat
        muscle = (au22 + av22) <= (bscale - fat_t) ** 2.2
        sl[muscle] = 40.0
        rho = np.sqrt((u / (cav_a * bscale)) ** 2 + ((v - 0.02) / (cav_b * bscale)) ** 2)
        cavity = rho <= 1.0
        sl[cavity] = -90.0                                           # mediastinal fat by default
        # lungs: apex taper, diaphragm domes; heart/great vessels/mediastinum carved out
        apex = math.sqrt(min(max((0.985 - t) / 0.30, 0.0), 1.0))
        lg = np.zeros(sl.shape, dtype=bool)
        if apex > 0:
            lr = (np.abs((u + 0.46) / (lung_w * apex)) ** 2.4 + np.abs((v - 0.05) / (lung_h * apex)) ** 2.4) <= 1.0
            ll = (np.abs((u - 0.46) / ((lung_w - 0.02) * apex)) ** 2.4
                  + np.abs((v - 0.06) / ((lung_h - 0.02) * apex)) ** 2.4) <= 1.0
            lg = ((lr & (t > dome_r)) | (ll & (t > dome_l))) & cavity & ~medgap
        dt_h = (t - heart_t) / heart_rt
        heart = None
        if abs(dt_h) < 1:
            heart = (((u - heart_u) / heart_r) ** 2 + ((v - heart_v) / (heart_r * 0.85)) ** 2) <= 1 - dt_h * dt_h
            lg &= ~heart
        vessels_m = desc2 if t < 0.78 else np.zeros_like(desc2)
        if heart_t < t < 0.78:
            vessels_m = vessels_m | asc2
        if abs(t - 0.78) < 0.025:
            vessels_m = vessels_m | arch2
        vessels_m = vessels_m & cavity
        lg &= ~vessels_m
        # abdomen below the domes: liver on the right, spleen/stomach (with a gas bubble) on the left
        below = cavity & (((u < 0) & (t <= dome_r)) | ((u >= 0) & (t <= dome_l)))
        if below.any():
            sl[below & (u < 0.15)] = 60.0
            sl[below & (u >= 0.15)] = 45.0
            dg = (t - dome0) / 0.05
            if abs(dg) < 1:
                sl[below & (((u - 0.35) / 0.18) ** 2 + ((v + 0.25) / 0.14) ** 2 <= 1 - dg * dg)] = -1000.0
        sl[lg] = lung_hu
        if heart is not None:
            sl[heart & cavity] = 40.0
        sl[vessels_m] = 40.0
        lung[k] = lg
        # spine: vertebral body (cortex + cancellous, discs every ~25 mm), canal, posterior elements
        disc = (zmm_all[k] / disc_w + rib_phase) % 1.0 < 0.16
        sl[vb <= 1.0] = 800.0
        sl[vb <= 0.72] = 80.0 if disc else 250.0
        sl[post & body] = 700.0
        sl[canal] = 30.0
        # ribs: oblique bands just outside the cavity, lower anteriorly; costal cartilage at the front
        if opt["ribs"] and dome0 < t < 0.95:
            frac = np.mod((zmm_all[k] + slope * (-v)) / pitch + rib_phase, 1.0)
            ribs = (rho > 1.01) & (rho < 1.10) & muscle & (frac < thick) & rib_ok
            sl[ribs & (v >= -0.55)] = 650.0
            sl[ribs & (v < -0.55)] = 150.0
        if 0.3 < t < 0.88:   # sternum
            sl[(np.abs(u) < 0.09) & (np.abs(v + (cav_b + 0.04)) < 0.04) & muscle] = 500.0
        if opt["table"]:
            sl[(v > 1.08) & (v < 1.14) & (np.abs(u) < 1.15)] = 150.0

    origin_mm = np.array([float(zz.ravel()[0]), float(yy.ravel()[0]), float(xx.ravel()[0])], np.float32)

    # ---- airways: trachea down to the carina, main bronchi towards the hila
    carina_t = 0.60 + 0.3 * dome0
    def tmm(tt: float) -> float:
        return (tt - 0.5) * zext
    if opt["airways"]:
        trach_y = 0.30 * B - yshift
        trach_r = 0.065 * A
        r2 = (xx[0] / trach_r) ** 2 + ((yy[0] - trach_y) / trach_r) ** 2
        for k in np.flatnonzero(tz > carina_t):
            vol[k][r2 <= 1.5625] = 40.0
            vol[k][r2 <= 1.0] = -1000.0
        for side in (-1, 1):
            p0 = (tmm(carina_t), trach_y, 0.0)
            p1 = (tmm(carina_t - 0.09), trach_y - 0.05 * B, side * 0.26 * A)
            _draw_segment(vol, None, p0, p1, trach_r * 0.75, trach_r * 0.55, -1000.0, origin_mm, spacing)

    # ---- pulmonary vessel trees from each hilum, only inside the lungs
    if opt["vessels"]:
        vtree = np.zeros(shape, dtype=bool)
        segs: list[tuple] = []
        sp_arr = np.asarray(spacing, np.float64)
        lung_idx = np.flatnonzero(lung)

        def in_lung(p) -> bool:
            i = np.rint((p - origin_mm) / sp_arr).astype(int)
            return bool(np.all(i >= 0) and np.all(i < shape) and lung[tuple(i)])

        for side in (-1, 1):
            hil = np.array([tmm(carina_t - 0.10), 0.05 * B - yshift, side * 0.24 * A], np.float64)
            side_idx = lung_idx[(lung_idx % X < X // 2) == (side < 0)] if lung_idx.size else lung_idx
            for _ in range(12):
                # each root aims at a random point of its lung (upper, middle and lower zones all get vessels)
                if side_idx.size:
                    target = np.array(np.unravel_index(rng.choice(side_idx), shape), float) * sp_arr + origin_mm
                    d = target - hil
                    dist = float(np.linalg.norm(d)) or 1.0
                    segs.append((hil, d / dist, 0.45 * dist, 0.03 * A, 0))
        tree = []
        while segs:
            p0, d, L, r, depth = segs.pop()
            p1 = p0 + d * L
            tree.append((p0, p1, r, r * 0.8))
            if depth < 5:
                for _ in range(2):
                    Lc = L * rng.uniform(0.65, 0.85)
                    for _try in range(4):          # prefer children that stay inside the lung
                        nd = d + rng.normal(0, 0.5, 3)
                        nd /= np.linalg.norm(nd)
                        if in_lung(p1 + nd * Lc):
                            break
                    segs.append((p1, nd, Lc, r * 0.7, depth + 1))
        _rasterize_tree(vtree, tree, origin_mm, spacing)
        vtree &= lung
        vol[vtree] = 40.0

    lung_mask = lung.astype(np.uint8)

    # ---- lesions
    if lesions is None:
        lesions = 0
    if isinstance(lesions, (int, np.integer)):
        specs = _random_lesions(int(lesions), rng, lung, spacing, A, tz, v)
    else:
        specs = [s if s.hu is not None else replace(s, hu=float(np.mean(LESION_HU_RANGE[s.kind]))) for s in lesions]
    lesion_mask = np.zeros(shape, dtype=np.uint8)
    for spec in specs:
        cz, cy, cx = spec.center
        rz, ry, rx = spec.radii_mm
        lo = [max(0, int(math.floor(c - r / s)) - 1) for c, r, s in zip(spec.center, spec.radii_mm, spacing)]
        hi = [min(n, int(math.ceil(c + r / s)) + 2) for c, r, s, n in zip(spec.center, spec.radii_mm, spacing, shape)]
        if any(h <= l for l, h in zip(lo, hi)):
            continue
        sl = tuple(slice(l, h) for l, h in zip(lo, hi))
        gz = ((np.arange(lo[0], hi[0]) - cz) * sz / rz).reshape(-1, 1, 1)
        gy = ((np.arange(lo[1], hi[1]) - cy) * sy / ry).reshape(1, -1, 1)
        gx = ((np.arange(lo[2], hi[2]) - cx) * sx / rx).reshape(1, 1, -1)
        inside = (gz ** 2 + gy ** 2 + gx ** 2 <= 1.0) & lung[sl]
        if not inside.any():
            continue
        texture = rng.normal(0.0, 1.0, inside.shape).astype(np.float32)
        texture = (texture + np.roll(texture, 1, 1) + np.roll(texture, 1, 2) + np.roll(texture, 1, 0)) * 0.5
        lo_hu, hi_hu = LESION_HU_RANGE[spec.kind]
        val = np.clip(spec.hu + 20.0 * texture, lo_hu, hi_hu)
        sub = vol[sl]
        if spec.kind == "ggo":
            sub[inside] = np.maximum(sub[inside], val[inside])   # vessels stay visible through ground glass
        else:
            sub[inside] = val[inside]
        lesion_mask[sl][inside] = 1

    # ---- correlated noise (in-plane 3-tap box filter, rescaled back to noise_hu)
    if noise_hu > 0:
        n = rng.standard_normal(shape, dtype=np.float32)
        n = (n + np.roll(n, 1, 1) + np.roll(n, 1, 2) + np.roll(n, -1, 2)) * np.float32(0.5)
        vol += n * np.float32(noise_hu)
    np.rint(vol, out=vol)
    np.clip(vol, -1024.0, 3071.0, out=vol)

    volume = Volume(
        array=vol,
        spacing=spacing,
        origin=(float(origin_mm[2]), float(origin_mm[1]), float(origin_mm[0])),
        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        modality="CT",
        is_hu=True,
        meta={"Modality": "CT", "SeriesDescription": f"LungLens chest phantom (seed {seed})",
              "BodyPartExamined": "CHEST", "Manufacturer": "LungLens phantom", "SliceThickness": float(sz),
              "WindowCenter": -600.0, "WindowWidth": 1500.0, "PatientPosition": "HFS"},
    )
    return Phantom(volume=volume, lesion_mask=lesion_mask, lung_mask=lung_mask, lesions=specs, seed=int(seed))


def _random_lesions(n, rng, lung, spacing, A, t, v) -> list[LesionSpec]:
    if n <= 0:
        return []
    idx = np.flatnonzero(lung)
    if idx.size == 0:
        return []
    # prefer posterior, lower, peripheral lung (COVID-19 pattern): weight by posterior-ness and inferior-ness
    zi, yi, xi = np.unravel_index(idx, lung.shape)
    tv = t[zi]
    vv = v[yi, 0]
    # subpleural rim: lung minus a ~12 mm in-plane erosion, computed on a ~4 mm grid (cheap at any size)
    step = max(1, int(round(4.0 / min(spacing[1], spacing[2]))))
    sub = lung[:, ::step, ::step]
    er = sub.copy()
    for _ in range(max(1, int(np.ceil(12.0 / (step * min(spacing[1], spacing[2])))))):
        er = er & np.roll(er, 1, 1) & np.roll(er, -1, 1) & np.roll(er, 1, 2) & np.roll(er, -1, 2)
    rim = (sub & ~er)[zi, yi // step, xi // step]
    w = (1.0 + vv.clip(-1, 1)) * (1.6 - tv) * (0.25 + 3.0 * rim)
    w = np.clip(w, 1e-6, None)
    w /= w.sum()
    picks = rng.choice(idx.size, size=n, replace=True, p=w)
    specs = []
    scale = A / 165.0
    for p in picks:
        kind = "ggo" if rng.uniform() < 0.7 else "consolidation"
        base = rng.uniform(8, 22) if kind == "ggo" else rng.uniform(5, 14)
        base *= max(scale, 0.25)
        radii = tuple(float(max(base * rng.uniform(0.7, 1.3), 0.75 * s)) for s in spacing)
        lo, hi = LESION_HU_RANGE[kind]
        hu = float(rng.uniform(lo + 0.15 * (hi - lo), hi - 0.15 * (hi - lo)))
        specs.append(LesionSpec(center=(int(zi[p]), int(yi[p]), int(xi[p])), radii_mm=radii, kind=kind, hu=hu))
    return specs
