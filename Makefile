# Two commands on a fresh machine: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test test-fast bench package package-test screenshots clean

# Reinstall only when the project's metadata changed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,package,onnx]"
	touch $(STAMP)

# The system check names every missing library of Qt's xcb plugin and the apt-get line that adds them.
run: $(STAMP)
	$(BIN)/python tools/check_system.py
	$(BIN)/consistency-studio --data demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks.quality

package: $(STAMP)
	$(BIN)/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller build_spec/consistency_studio.spec

package-test: package
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m slow tests

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python tools/screenshots.py

clean:
	rm -rf build dist $(VENV)
