# Set-up and checks; PYTHON is whichever interpreter (or venv) you install into.
PYTHON ?= python3
IMAGE ?= jax-mlp-pipeline:0.1.0

.PHONY: setup test test-fast compile run

setup:  ## install the project and prepare MNIST for tfds (offline copy, verified)
	$(PYTHON) -m pip install -e '.[test]'
	$(PYTHON) -m components.ingest seed-tfds-cache

test:  ## every test, the slow real-MNIST runs included
	$(PYTHON) -m pytest

test-fast:  ## skip the 10-epoch trajectory and the whole-DAG run
	$(PYTHON) -m pytest -m "not slow"

compile:
	$(PYTHON) pipeline.py compile --output pipeline.yaml --image $(IMAGE)

run:
	$(PYTHON) pipeline.py run
