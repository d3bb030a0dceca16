# unirepclip: the two commands a newcomer needs are `make reports` and `make test`.
# Both create .venv and install the project into it when it is missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= demo

.PHONY: venv reports test test-all lab bench train-demo clean help

help:
	@echo "make reports   run every notebook on the embedded demo (PROFILE=$(PROFILE)) -> reports/$(PROFILE)/index.html"
	@echo "make test      run the test suite (slow checks excluded; make test-all runs them too)"
	@echo "make lab       open the notebooks in JupyterLab with the project's kernel"
	@echo "make bench     run the CPU benchmarks"
	@echo "make train-demo  retrain the shipped demo checkpoint (about 55 minutes on 2 cores)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

reports: $(STAMP)
	$(PY) -m unirepclip run --profile $(PROFILE)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

lab: $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name unirepclip --display-name "Python (unirepclip)"
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/bench_all.py

train-demo: $(STAMP)
	$(PY) -m unirepclip train-demo --out lib/unirepclip/models/weights

clean:
	rm -rf reports/*/ .pytest_cache
