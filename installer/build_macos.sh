#!/usr/bin/env bash
# Build the macOS app and disk image:  installer/build_macos.sh
#
#   dist/LungLens.app               the application (one-folder PyInstaller bundle inside Contents/)
#   dist/LungLens-<version>.dmg     drag-to-Applications disk image
#
# Needs: Python 3.11 (python.org universal installer or Homebrew) as python3.11, Xcode command-line tools
# (codesign, hdiutil come with macOS).  Builds for the machine's architecture (arm64 on Apple silicon).  The app is
# ad-hoc signed by PyInstaller; for distribution outside your site set LUNGLENS_CODESIGN_IDENTITY="Developer ID
# Application: ..." and notarise the .dmg (xcrun notarytool submit ... --wait; xcrun stapler staple ...).
# UNTESTED in LungLens CI (no macOS machine) -- see installer/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "== creating .venv"
    "${PYTHON:-python3.11}" -m venv .venv
fi
echo "== installing LungLens and the build extra (PyInstaller) into .venv"
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet -e '.[installer]'
version="$("$PY" -c 'import engine; print(engine.__version__)')"

echo "== icons"
"$PY" installer/make_icons.py build/installer/icons

echo "== PyInstaller (one-folder .app)"
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/installer/pyinstaller \
    installer/lunglens.spec

echo "== smoke test: render the demo offscreen"
QT_QPA_PLATFORM=offscreen dist/LungLens.app/Contents/MacOS/lunglens --demo --screenshot build/installer/smoke.png
test -s build/installer/smoke.png

echo "== disk image"
stage="build/installer/dmg"
rm -rf "$stage"
mkdir -p "$stage"
cp -R dist/LungLens.app "$stage/"
ln -s /Applications "$stage/Applications"
dmg="dist/LungLens-$version.dmg"
rm -f "$dmg"
hdiutil create -volname "LungLens $version" -srcfolder "$stage" -ov -format UDZO "$dmg"
rm -rf "$stage"
if [ -n "${LUNGLENS_CODESIGN_IDENTITY:-}" ]; then
    codesign --sign "$LUNGLENS_CODESIGN_IDENTITY" --timestamp "$dmg"
fi
echo "disk image: $dmg"
