# syntax=docker/dockerfile:1
# The project image: every component runs on it (kfp lightweight components, no pip at run time).
#   docker build -t jax-mlp-pipeline:0.1.0 .
#   docker build --build-arg ACCELERATOR=cuda -t jax-mlp-pipeline:0.1.0-cuda .
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# cpu, or cuda for JAX's CUDA wheels (the host then needs only the NVIDIA driver + container toolkit).
ARG ACCELERATOR=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so code edits do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p mlp_core/data components clusters bench \
    && touch mlp_core/__init__.py mlp_core/data/__init__.py components/__init__.py clusters/__init__.py \
        bench/__init__.py pipeline.py \
    && extras=$([ "$ACCELERATOR" = cuda ] && echo "[cuda]" || true) \
    && /opt/venv/bin/pip install ".${extras}" \
    && /opt/venv/bin/pip uninstall -y jax-mlp-pipeline
COPY mlp_core mlp_core
COPY components components
COPY clusters clusters
COPY bench bench
COPY pipeline.py ./
RUN /opt/venv/bin/pip install --no-deps . && /opt/venv/bin/python -c "import mlp_core, components.train, kfp"

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_ENABLE_ONEDNN_OPTS=0
RUN useradd --create-home --uid 1000 mlp
USER mlp
WORKDIR /home/mlp
# No ENTRYPOINT: kfp sets the command of every step.
CMD ["jax-mlp-pipeline", "--help"]
