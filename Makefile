# vadstream: `make run` starts the daemon on the default microphone, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test test-fast lint fuzz bench train evaluate setup setup-test clean

$(BIN)/python:
	./script/setup-system run
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-installed: $(BIN)/python setup.cfg
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: $(BIN)/python setup.cfg
	./script/setup-system test
	$(BIN)/pip install -q -e '.[test,train,bench,plot,wyoming]'
	touch $@

setup: $(VENV)/.run-installed
setup-test: $(VENV)/.test-installed

run: setup
	$(BIN)/vadstream run $(ARGS)

test: setup-test
	$(BIN)/python -m pytest $(ARGS)

# the quick loop: no PulseAudio server, no training, nothing built or installed (README: its time)
test-fast: setup-test
	$(BIN)/python -m pytest -m "not slow and not audio and not training" $(ARGS)

# ruff, configured in pyproject.toml
lint: setup-test
	$(BIN)/ruff check .

# the fuzz suite with many more examples than make test runs (docs/fuzzing.md)
fuzz: setup-test
	VADSTREAM_FUZZ_PROFILE=fuzz $(BIN)/python -m pytest -m fuzz -p no:cacheprovider $(ARGS)

bench: setup-test
	$(BIN)/python -m bench $(ARGS)

train: setup-test
	$(BIN)/vadstream train $(ARGS)

evaluate: setup-test
	$(BIN)/vadstream evaluate $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
