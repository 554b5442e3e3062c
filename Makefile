# Set-up and checks. `make setup` makes the project's own virtualenv, .venv, and every target runs
# its Python: nothing to activate for make (the README activates it for its own `python ...` commands).
#   make setup                         .venv from python3.11 (else python3), then the locked install
#   make setup BASE_PYTHON=python3.12  .venv from another interpreter
#   make setup PYTHON=python3          no .venv: install into that interpreter (CI does, as root)
VENV ?= .venv
BASE_PYTHON ?= $(shell command -v python3.11 || command -v python3)
PYTHON ?= $(VENV)/bin/python
IMAGE ?= jax-mlp-pipeline:0.1.0

.PHONY: setup test test-fast compile run image bench bench-npz bench-ingest bench-tune lock check-python

# uv, hash-pinned in requirements/bootstrap.txt, goes in first with whatever pip the interpreter has (a stock
# Python 3.11's bundled pip 23.2 cannot install dev.txt itself: it refuses a pinned package's extras in hash mode);
# uv then installs the same locked, hash-checked set many times faster (a fresh .venv here: 29 s, cold cache).
# --compile-bytecode: without .pyc files, where PYTHONDONTWRITEBYTECODE is set, every process compiles TensorFlow
# again (`import tensorflow` 8.5 s instead of 3.2 s).
# --python gets a path: uv takes a bare name (CI's PYTHON=python3) only for a virtualenv.
UV_PIP = $(PYTHON) -m uv pip install --python "$$(command -v $(PYTHON))"

setup: $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(VENV)/bin/python)  ## uv (requirements/bootstrap.txt), the locked dependencies (requirements/dev.txt), the project, and MNIST for tfds
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/bootstrap.txt
	$(UV_PIP) --require-hashes --compile-bytecode -r requirements/dev.txt
	$(UV_PIP) --no-deps -e .
	$(PYTHON) -m components.ingest seed-tfds-cache

$(VENV)/bin/python:
	@test -n "$(BASE_PYTHON)" || { echo "error: no python3.11 or python3 on PATH: make setup BASE_PYTHON=/path/to/python3.11" >&2; exit 2; }
	$(BASE_PYTHON) -m venv $(VENV)

# Every target below runs $(PYTHON): say so in one line when it is not there yet, rather than make's own error.
check-python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: run make setup first (or name one: PYTHON=...)" >&2; exit 2; }

test: | check-python  ## every test: the quick tier on every core, then the end-to-end runs and the Docker tests one at a time
	$(PYTHON) -m pytest -n auto -m "not slow and not docker"
	$(PYTHON) -m pytest -m "slow or docker"

test-fast: | check-python  ## the quick tier: no end-to-end runs, no Docker, on every core
	$(PYTHON) -m pytest -n auto -m "not slow and not docker"

ACCELERATOR ?= cpu
# BASE_IMAGE: python:3.11-slim (the Dockerfile's default, from Docker Hub) unless named, e.g. a mirror's copy.
# DOCKER_BUILD_FLAGS: anything else for docker build (CI: -q --network host).

image:  ## build and tag the project image (ACCELERATOR=cuda for the CUDA variant, tagged -cuda; BASE_IMAGE=... for another base)
	docker build $(DOCKER_BUILD_FLAGS) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	    --build-arg ACCELERATOR=$(ACCELERATOR) \
	    --build-arg LOCK_SHA256=$$(sha256sum requirements/$(ACCELERATOR).txt | cut -c1-64) \
	    -t $(if $(filter cuda,$(ACCELERATOR)),$(patsubst %-cuda,%,$(IMAGE))-cuda,$(IMAGE)) .

compile: | check-python  ## pipeline.yaml for Kubeflow: the train step requests a GPU and runs on the -cuda image
	$(PYTHON) pipeline.py compile --output pipeline.yaml

run: | check-python
	$(PYTHON) pipeline.py run

out/dataset: | check-python
	$(PYTHON) -m components.ingest --output out/dataset

bench: out/dataset | check-python  ## the notebook's loop vs ours on full MNIST, 10 epochs (prints figures and ratios)
	$(PYTHON) -m bench.train_speed --dataset out/dataset --epochs 10

bench-npz: out/dataset | check-python  ## data/mnist.npz, for the benchmark on a machine without TensorFlow (a GPU)
	mkdir -p data
	$(PYTHON) -m bench.train_speed --dataset out/dataset --write-npz data/mnist.npz

bench-tune: out/dataset | check-python  ## tuning: 16 trials x 3 epochs as one vmapped population vs one after another vs 16 train processes
	$(PYTHON) -m bench.tune_speed --dataset out/dataset --trials 16 --epochs 3

bench-ingest: | check-python  ## image-folder ingest vs a plain tf.data decode loop on the same 22,000 MNIST PNGs (images/s per core)
	$(PYTHON) -m bench.ingest_speed --images 20000

# The image's dependencies, locked with hashes by uv (one file per image variant, and one for
# development and CI). The Dockerfile installs them with --require-hashes.
UV ?= $(PYTHON) -m uv
LOCK = $(UV) pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28

lock:  ## regenerate requirements/{cpu,cuda,dev,bootstrap}.txt from pyproject.toml (needs uv: pip install uv)
	$(LOCK) -o requirements/cpu.txt
	$(LOCK) --extra cuda -o requirements/cuda.txt
	$(LOCK) --extra test --extra vertex --extra docker -o requirements/dev.txt
	$(UV) pip compile requirements/bootstrap.in --quiet --generate-hashes --python-version 3.11 -o requirements/bootstrap.txt
