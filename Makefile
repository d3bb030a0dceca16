# unirepclip: the two commands a newcomer needs are `make reports` and `make test`.
# Both create .venv and install the project into it when it is missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= demo
# Notebooks run at once by `make reports` (each in its own kernel on one CPU thread: the demo's
# notebooks set num_threads=1), so two cores run two.
JOBS ?= 2
# The tests run on every core (pytest-xdist; the workers share one ci-profile run of the
# notebooks, tests/conftest.py); XDIST= runs them in one process.
XDIST  ?= -n auto

.PHONY: venv reports test test-all browser slurm lab bench train-demo clean help

# The browser tests drive Debian's headless Chromium (tests/test_browser.py finds it the same way:
# $CHROMIUM / $CHROMEDRIVER, else on the PATH).
BROWSER_PKGS := chromium chromium-driver
HAVE_BROWSER = { [ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || \
                 command -v chromium-browser >/dev/null 2>&1; } && \
               { [ -n "$$CHROMEDRIVER" ] || command -v chromedriver >/dev/null 2>&1; }

help:
	@echo "make reports   run every notebook on the embedded demo (PROFILE=$(PROFILE)) -> reports/$(PROFILE)/index.html"
	@echo "make test      run the test suite (slow checks excluded; make test-all runs them too);"
	@echo "               installs Debian's chromium + chromium-driver for the browser tests when missing"
	@echo "make lab       open the interactive explorer (notebooks/06_explore.ipynb) in JupyterLab with the project's kernel"
	@echo "make bench     run the CPU benchmarks"
	@echo "make train-demo  retrain the shipped demo checkpoint (about 55 minutes on 2 cores;"
	@echo "               DEMO_MODEL=UniRepLKNet-Demo-SmallKernel or ViT-Demo for the others)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

reports: $(STAMP)
	$(PY) -m unirepclip run --profile $(PROFILE) --jobs $(JOBS)

# Installs Chromium and its driver where they are missing and it can (root, apt); else stops here,
# before any test runs, with the one command that installs them.
browser:
	@if ! ($(HAVE_BROWSER)); then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "installing $(BROWSER_PKGS) for the browser tests"; \
	        apt-get update -qq && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PKGS) >/dev/null; \
	    else \
	        echo "the browser tests need Chromium and its driver; install them, then rerun:" >&2; \
	        echo "    sudo apt-get install -y $(BROWSER_PKGS)" >&2; \
	        exit 1; \
	    fi; \
	fi

# The Slurm tests start a real single-node cluster from Debian's packages (tests/slurm_cluster.py);
# installed here where missing and it can (root, apt), else the tests say which command does.
SLURM_PKGS := slurm-wlm slurmdbd mariadb-server munge
HAVE_SLURM = command -v sbatch >/dev/null 2>&1 && \
             PATH="$$PATH:/usr/sbin:/sbin" command -v slurmctld slurmd slurmdbd mariadbd munged >/dev/null 2>&1
slurm:
	@if ! ($(HAVE_SLURM)); then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "installing $(SLURM_PKGS) for the Slurm tests"; \
	        apt-get update -qq && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	            $(SLURM_PKGS) >/dev/null; \
	    else \
	        echo "the Slurm tests will be skipped: they need $(SLURM_PKGS); install them with" >&2; \
	        echo "    sudo apt-get install -y $(SLURM_PKGS)" >&2; \
	    fi; \
	fi

test: browser slurm $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(XDIST)

test-all: browser slurm $(STAMP)
	$(PY) -m pytest -q $(XDIST)

# JupyterLab refuses to start as root without --allow-root (a container, a CI runner): given then.
# The kernel is registered by the package (python -m unirepclip kernel: "Python (unirepclip)").
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP)
	$(PY) -m unirepclip kernel
	$(VENV)/bin/jupyter lab $(LAB_ROOT) --MappingKernelManager.default_kernel_name=unirepclip \
		notebooks/06_explore.ipynb

bench: $(STAMP)
	$(PY) benchmarks/bench_all.py
	$(PY) benchmarks/bench_data.py

# DEMO_MODEL=UniRepLKNet-Demo-SmallKernel retrains the 3x3 control, DEMO_MODEL=ViT-Demo the demo ViT
DEMO_MODEL ?= UniRepLKNet-Demo
train-demo: $(STAMP)
	$(PY) -m unirepclip train-demo --model $(DEMO_MODEL) --out lib/unirepclip/models/weights

clean:
	rm -rf reports/*/ .pytest_cache
