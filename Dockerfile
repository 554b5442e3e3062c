# syntax=docker/dockerfile:1
# The project image: every component runs on it (kfp lightweight components, no pip at run time).
#   make image                      # CPU:  jax-mlp-pipeline:0.1.0
#   make image ACCELERATOR=cuda     # CUDA: jax-mlp-pipeline:0.1.0-cuda
# Dependencies come from the variant's lock file (requirements/cpu.txt or cuda.txt, made by `make lock`
# with uv), every file checked against its sha256: rebuilding a tag next month installs the same wheels.
# LOCK_SHA256 (the lock file's sha256, which `make image` passes) is checked here and carried as a label.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# cpu, or cuda for JAX's CUDA wheels (the host then needs only the NVIDIA driver + container toolkit).
ARG ACCELERATOR=cpu
ARG LOCK_SHA256
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from the lock alone, so code edits do not reinstall them.
COPY requirements/${ACCELERATOR}.txt requirements.lock
RUN test -n "$LOCK_SHA256" || { echo "build with --build-arg LOCK_SHA256=\$(sha256sum requirements/${ACCELERATOR}.txt) (make image does)"; exit 1; } \
    && echo "$LOCK_SHA256  requirements.lock" | sha256sum -c - \
    && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY mlp_core mlp_core
COPY components components
COPY artifacts artifacts
COPY platforms platforms
COPY commands commands
COPY bench bench
COPY pipeline.py ./
# The project itself (no dependencies: all of them are in the lock; setuptools only builds it).
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -c "import mlp_core, components.train, kfp"

FROM ${BASE_IMAGE}
ARG ACCELERATOR=cpu
ARG LOCK_SHA256
LABEL org.opencontainers.image.title="jax-mlp-pipeline" \
      io.github.jax-mlp-pipeline.accelerator="${ACCELERATOR}" \
      io.github.jax-mlp-pipeline.lock-sha256="${LOCK_SHA256}"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_ENABLE_ONEDNN_OPTS=0 \
    JAX_MLP_LOCK_SHA256=${LOCK_SHA256}
RUN useradd --create-home --uid 1000 mlp
USER mlp
WORKDIR /home/mlp
# No ENTRYPOINT: kfp sets the command of every step.
CMD ["jax-mlp-pipeline", "--help"]
