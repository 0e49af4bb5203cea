# Two commands do all the set-up on a fresh clone:
#   make compare   build .venv, install the project, run the default comparison
#   make test      build .venv, install the project with its test extras, run the test suite
# and, after either:
#   make notebooks run the notebooks and save their outputs in the files (NOTEBOOKS="01_....ipynb" for some)
#   make figures   redraw the computational-graph figures of docs/derivations.md
#   make lab       open the notebooks in JupyterLab (installs it into .venv the first time; LAB_ARGS="--no-browser")
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The test suite on up to 4 processes (pytest-xdist); PYTEST_WORKERS= runs it in one. Each worker runs its BLAS and
# TensorFlow on cores // workers threads (tests/conftest.py), so that workers times threads never exceed the cores.
PYTEST_WORKERS ?= -n auto --maxprocesses=4

.PHONY: compare test lint install notebooks lab figures clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,data,plot]'
	touch $(STAMP)

install: $(STAMP)

compare: $(STAMP)
	$(BIN)/backprop-parity compare $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(BIN)/python notebooks/execute.py $(NOTEBOOKS)

lab: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[lab]'
	$(BIN)/jupyter lab notebooks/ $(LAB_ARGS)

figures: $(STAMP)
	$(BIN)/python docs/figures/make_figures.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
