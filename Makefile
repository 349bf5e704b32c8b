# LungLens — one Makefile for people and CI.  `make run` sets up and opens the demo; `make test` runs the suite.
PY_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export QT_API := pyside6

.PHONY: setup run test test-fast bench installer installer-test clean lint-arch

setup: $(STAMP)

# Re-install only when the dependency list changes.  torch is pinned in pyproject (CPU build).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/lunglens --demo --model lightsqueeze_proposed

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

test-fast: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

lint-arch: setup
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) -m bench.run_all

# The double-click installer (installer/README.md): dist/lunglens/ (PyInstaller one-folder) + dist/lunglens_*.deb
installer: setup
	$(PY) -c "import PyInstaller" 2>/dev/null || $(PY) -m pip install --quiet -e '.[installer]'
	installer/build_linux.sh

# Build, then run the bundle's own (slow) test: starts the frozen app offscreen, screens the demo, checks the heatmap
installer-test: installer
	LUNGLENS_BUNDLE=dist/lunglens QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests/installer

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
