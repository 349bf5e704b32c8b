# Build the Windows installer:  powershell -ExecutionPolicy Bypass -File installer\build_windows.ps1
#
#   dist\lunglens\                      one-folder bundle: lunglens.exe (viewer, windowed),
#                                       lunglens-screen.exe (batch screening, console), _internal\
#   dist\LungLens-<version>-setup.exe   Inno Setup installer (per-user by default, no admin rights needed)
#
# Needs: Python 3.11 (x64) as `py -3.11`, Inno Setup 6 (`iscc` on PATH or in its default folder).  On Windows the
# PyPI torch wheel is already the CPU build.  UNTESTED in LungLens CI (no Windows machine) -- see installer\README.md.
$ErrorActionPreference = "Stop"
$Root = Resolve-Path (Join-Path $PSScriptRoot "..")
Set-Location $Root

$Py = Join-Path $Root ".venv\Scripts\python.exe"
if (-not (Test-Path $Py)) {
    Write-Host "== creating .venv"
    py -3.11 -m venv .venv
    if ($LASTEXITCODE -ne 0) { throw "Python 3.11 (x64) is needed: https://www.python.org/downloads/windows/" }
}
Write-Host "== installing LungLens and the build extra (PyInstaller) into .venv"
& $Py -m pip install --quiet --upgrade pip
& $Py -m pip install --quiet -e ".[installer]"
if ($LASTEXITCODE -ne 0) { throw "pip install failed" }
& $Py -c "import sys, torch; sys.exit('GPU torch build: install the CPU wheel' if torch.version.cuda else 0)"
if ($LASTEXITCODE -ne 0) { throw "torch in .venv is a CUDA build; install the CPU build before bundling" }

$Version = (& $Py -c "import engine; print(engine.__version__)").Trim()

Write-Host "== icons"
& $Py installer\make_icons.py build\installer\icons
if ($LASTEXITCODE -ne 0) { throw "icon rendering failed" }

Write-Host "== PyInstaller (one-folder)"
& $Py -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build\installer\pyinstaller installer\lunglens.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }

Write-Host "== smoke test: render the demo offscreen"
$env:QT_QPA_PLATFORM = "offscreen"
& dist\lunglens\lunglens-screen.exe --help | Out-Null
if ($LASTEXITCODE -ne 0) { throw "the bundled lunglens-screen.exe does not start" }
$proc = Start-Process -FilePath "dist\lunglens\lunglens.exe" -ArgumentList "--demo", "--screenshot", "build\installer\smoke.png" -Wait -PassThru -NoNewWindow
Remove-Item Env:QT_QPA_PLATFORM
if ($proc.ExitCode -ne 0 -or -not (Test-Path build\installer\smoke.png)) { throw "the bundled viewer did not render the demo" }

Write-Host "== Inno Setup"
$Iscc = (Get-Command iscc -ErrorAction SilentlyContinue).Source
if (-not $Iscc) { $Iscc = Join-Path ${env:ProgramFiles(x86)} "Inno Setup 6\ISCC.exe" }
if (-not (Test-Path $Iscc)) { throw "Inno Setup 6 not found: install it from https://jrsoftware.org/isinfo.php (or winget install JRSoftware.InnoSetup)" }
& $Iscc "/DAppVersion=$Version" installer\windows\lunglens.iss
if ($LASTEXITCODE -ne 0) { throw "iscc failed" }
Write-Host "installer: dist\LungLens-$Version-setup.exe"
