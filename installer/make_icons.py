"""Render the LungLens icon (resources/icons/lunglens.svg) to PNG, ICO (Windows) and ICNS (macOS).

    python installer/make_icons.py OUT_DIR [--png-only]

Writes ``OUT_DIR/lunglens-<N>.png`` (16..512 px), ``OUT_DIR/lunglens.ico`` and ``OUT_DIR/lunglens.icns``.  Uses
Qt's SVG renderer (PySide6, already a dependency) and Pillow; runs offscreen, so it works on a build server.
``resources/icons/lunglens.png`` (256 px) is committed; rerun with ``--update-resources`` after editing the SVG.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icons" / "lunglens.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render_png(svg: Path, size: int, out: Path) -> Path:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841 - needed by QPainter
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise SystemExit(f"make_icons: could not write {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--png-only", action="store_true", help="skip ICO/ICNS")
    parser.add_argument("--update-resources", action="store_true",
                        help="also refresh the committed resources/icons/lunglens.png (256 px)")
    args = parser.parse_args(argv)
    pngs = {size: render_png(SVG, size, args.out / f"lunglens-{size}.png") for size in SIZES}
    if args.update_resources:
        render_png(SVG, 256, ROOT / "resources" / "icons" / "lunglens.png")
    if not args.png_only:
        from PIL import Image

        big = Image.open(pngs[512])
        big.save(args.out / "lunglens.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
        big.save(args.out / "lunglens.icns")
    print(f"icons written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
