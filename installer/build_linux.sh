#!/usr/bin/env bash
# Build the Linux bundle and its .deb:  installer/build_linux.sh [--no-deb] [--deb-only]
#
#   dist/lunglens/                      one-folder bundle: ./lunglens (viewer), ./lunglens-screen, _internal/
#   dist/lunglens_<version>_amd64.deb   installs it to /opt/lunglens, with /usr/bin links, a .desktop launcher
#                                       and the icon; `sudo apt remove lunglens` takes all of it away again
#
# Needs the project venv with the build extra (`make installer` does this):  .venv/bin/pip install -e '.[installer]'
# Environment: PY (python, default .venv/bin/python), NICE (niceness of the build, default 10),
#              DEB_COMPRESSION (dpkg-deb -Z: xz (default, smallest), zstd, gzip or none).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
NICE="${NICE:-10}"
DEB_COMPRESSION="${DEB_COMPRESSION:-xz}"
BUILD="$ROOT/build/installer"
DIST="$ROOT/dist"
BUNDLE="$DIST/lunglens"

build_bundle=1 build_deb=1
for arg in "$@"; do
    case "$arg" in
        --no-deb) build_deb=0 ;;
        --deb-only) build_bundle=0 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "build_linux.sh: unknown option $arg (use --no-deb or --deb-only)" >&2; exit 2 ;;
    esac
done

say() { printf '\n== %s\n' "$*"; }
version="$("$PY" -c 'import engine; print(engine.__version__)')"

say "icons"
"$PY" installer/make_icons.py "$BUILD/icons" --png-only

if [ "$build_bundle" = 1 ]; then
    "$PY" -c 'import PyInstaller' 2>/dev/null || {
        echo "build_linux.sh: PyInstaller is missing; run: $PY -m pip install -e '.[installer]'" >&2; exit 1; }
    # A CUDA torch would put ~3 GB of GPU libraries into the bundle: refuse it (use the CPU wheel index).
    "$PY" - <<'EOF'
import sys, torch
if torch.version.cuda or torch.version.hip:
    sys.exit(f"build_linux.sh: this venv has a GPU build of torch ({torch.__version__}); install the CPU build "
             "(pip install torch==<pinned> --index-url https://download.pytorch.org/whl/cpu) before bundling")
EOF
    say "PyInstaller (one-folder, nice $NICE)"
    start=$(date +%s)
    nice -n "$NICE" "$PY" -m PyInstaller --noconfirm --log-level WARN \
        --distpath "$DIST" --workpath "$BUILD/pyinstaller" installer/lunglens.spec
    echo "bundle: $BUNDLE ($(du -sh "$BUNDLE" | cut -f1), built in $(( $(date +%s) - start )) s)"
fi

[ -x "$BUNDLE/lunglens" ] || { echo "build_linux.sh: no bundle at $BUNDLE (build without --deb-only first)" >&2; exit 1; }

if [ "$build_deb" = 1 ]; then
    if ! command -v dpkg-deb >/dev/null; then
        echo "build_linux.sh: dpkg-deb not found: the bundle is in $BUNDLE, no .deb made" >&2; exit 0
    fi
    say ".deb"
    stage="$BUILD/deb/lunglens_${version}_amd64"
    rm -rf "$stage"
    mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/usr/share/applications" \
             "$stage/usr/share/icons/hicolor/scalable/apps" "$stage/usr/share/doc/lunglens"
    cp -al "$BUNDLE" "$stage/opt/lunglens" 2>/dev/null || cp -a "$BUNDLE" "$stage/opt/lunglens"
    ln -s /opt/lunglens/lunglens "$stage/usr/bin/lunglens"
    ln -s /opt/lunglens/lunglens-screen "$stage/usr/bin/lunglens-screen"
    install -m 644 installer/linux/lunglens.desktop "$stage/usr/share/applications/lunglens.desktop"
    install -m 644 resources/icons/lunglens.svg "$stage/usr/share/icons/hicolor/scalable/apps/lunglens.svg"
    for size in 16 24 32 48 64 128 256 512; do
        mkdir -p "$stage/usr/share/icons/hicolor/${size}x${size}/apps"
        install -m 644 "$BUILD/icons/lunglens-$size.png" "$stage/usr/share/icons/hicolor/${size}x${size}/apps/lunglens.png"
    done
    install -m 644 installer/linux/copyright "$stage/usr/share/doc/lunglens/copyright"
    installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
    # Libraries the bundle takes from the system (PyInstaller leaves out glibc, OpenGL/EGL, fontconfig and the
    # X11/xcb client libraries that must match the desktop): Qt's xcb platform plugin needs these.
    sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_kb/" installer/linux/control.in \
        > "$stage/DEBIAN/control"
    # no maintainer scripts: dpkg's file triggers (desktop-file-utils, hicolor-icon-theme) refresh the menus
    deb="$DIST/lunglens_${version}_amd64.deb"
    start=$(date +%s)
    # packed under a temporary name and renamed when complete: an interrupted build (or a reader during the
    # minutes of xz) never sees a truncated .deb under the real name
    rm -f "$deb.part"
    nice -n "$NICE" dpkg-deb --root-owner-group -Z"$DEB_COMPRESSION" --build "$stage" "$deb.part" >/dev/null
    mv -f "$deb.part" "$deb"
    rm -rf "$stage"
    echo "deb: $deb ($(du -sh "$deb" | cut -f1), packed in $(( $(date +%s) - start )) s)"
fi
