# Two commands on a fresh machine: `make run` and `make test`. Everything else is installed from the lock file.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
CHURN := $(VENV)/bin/churn
# the workspace's browser test drives Debian's chromium (../shared/ENVIRONMENT.md), installed through apt if absent
CHROMIUM := /usr/bin/chromium
# the workspace's tests also run on a throwaway PostgreSQL server: Debian's, installed through apt if absent
POSTGRES := /usr/lib/postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# uv: never download a Python build, install into .venv, exactly the locked versions
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# byte-compile every installed module once, at install: with PYTHONDONTWRITEBYTECODE set (as on these machines)
# Python would otherwise compile each imported module's source again in every process
export UV_COMPILE_BYTECODE := 1
# offline and quiet at run time (../shared/ENVIRONMENT.md)
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: run test venv bench notebooks clean

run: venv  ## create .venv from the lock, generate the default data if there is none, run the whole pipeline
	$(CHURN) generate --if-missing
	$(CHURN) run

test: venv $(CHROMIUM) $(POSTGRES)  ## the whole test suite
	$(VENV)/bin/python -m pytest -q

bench: venv  ## speed figures (see bench/; the feature bench needs 1M validated customers: see its docstring)
	$(VENV)/bin/python bench/bench_generate.py 20000 1000000

# JupyterLab: the notebooks' jupytext .py files open as notebooks on a double click (a default of the lab's own
# settings, under .venv; a user's settings still win)
NOTEBOOK_VIEWERS := $(VENV)/share/jupyter/lab/settings/overrides.d/churn-notebooks.json
# Jupyter refuses to serve as root without being told (the project machines run as root)
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

notebooks: venv $(NOTEBOOK_VIEWERS)  ## JupyterLab over notebooks/ on 127.0.0.1: open the address it prints
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks --no-browser \
		--LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
		--LabApp.extension_manager=readonly $(ALLOW_ROOT)

venv: $(VENV)/.synced

$(NOTEBOOK_VIEWERS): $(VENV)/.synced
	mkdir -p $(@D)
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' > $@

$(CHROMIUM):  ## Chromium through apt when absent (the browser test)
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

$(POSTGRES):  ## PostgreSQL's server binaries through apt when absent (the workspace's tests on PostgreSQL)
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

clean:  ## remove the environments (data/ and outputs/ are kept)
	rm -rf $(VENV) $(TOOLS)
