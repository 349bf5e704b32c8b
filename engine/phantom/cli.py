"""``lunglens-engine phantom OUT``: write a synthetic chest-CT phantom as a DICOM series or NIfTI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _triple(kind):
    def parse(text: str):
        parts = text.replace("x", ",").split(",")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError("expected three values z,y,x (e.g. 64,256,256)")
        return tuple(kind(p) for p in parts)
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (DICOM) or .nii/.nii.gz file (NIfTI)")
    parser.add_argument("--format", choices=("dicom", "nifti"), default=None,
                        help="default: nifti if OUT ends in .nii/.nii.gz, else dicom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", type=_triple(int), default=(64, 256, 256), help="z,y,x voxels (64,256,256)")
    parser.add_argument("--spacing", type=_triple(float), default=(5.0, 1.4, 1.4), help="z,y,x mm (5,1.4,1.4)")
    parser.add_argument("--lesions", type=int, default=4, help="number of random COVID-like lesions (0 = healthy)")
    parser.add_argument("--transfer-syntax", default="1.2.840.10008.1.2.1",
                        help="DICOM transfer syntax UID (explicit VR LE default; .1.2, .1.2.2, .1.2.5, .4.80, .4.90)")
    parser.add_argument("--mask", action="store_true", help="also write the lesion mask as OUT-lesions.nii.gz")


def run(args: argparse.Namespace) -> int:
    from engine.io.volume import Volume
    from engine.phantom import make_phantom, write_dicom_series, write_nifti

    out: Path = args.out
    fmt = args.format or ("nifti" if out.name.endswith((".nii", ".nii.gz")) else "dicom")
    ph = make_phantom(args.shape, args.spacing, seed=args.seed, lesions=args.lesions)
    try:
        if fmt == "nifti":
            if not out.name.endswith((".nii", ".nii.gz")):
                out = out.with_name(out.name + ".nii.gz")
            written = [write_nifti(ph.volume, out)]
        else:
            written = write_dicom_series(ph.volume, out, transfer_syntax=args.transfer_syntax,
                                         uid_seed=f"phantom-{args.seed}")
    except FileExistsError as exc:
        print(f"lunglens-engine phantom: {exc}")
        return 1
    if args.mask:
        base = out.name.removesuffix(".gz").removesuffix(".nii")
        mask = Volume(array=ph.lesion_mask, spacing=ph.volume.spacing, origin=ph.volume.origin,
                      direction=ph.volume.direction, is_hu=False, modality="SEG")
        write_nifti(mask, out.parent / f"{base}-lesions.nii.gz")
    print(json.dumps({"out": str(out), "format": fmt, "files": len(written), "shape": list(ph.volume.shape),
                      "spacing": list(ph.volume.spacing), "seed": args.seed,
                      "lesions": [{"center": list(s.center), "radii_mm": [round(r, 2) for r in s.radii_mm],
                                   "kind": s.kind, "hu": round(s.hu, 1)} for s in ph.lesions]}, indent=1))
    return 0
