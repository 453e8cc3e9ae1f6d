# syntax=docker/dockerfile:1
# The gate in a container: the GitHub Action's image and a plain CLI image.
#
#   docker build -t gate .                                              # CPU torch (default)
#   docker build -t gate:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#   docker build --build-arg PIP_INDEX_URL=https://pypi.example.internal/simple \
#                --secret id=pip_ca,src=/etc/ssl/corp-ca.pem -t gate .    # a private index behind a TLS proxy
#   docker run --rm -v "$PWD:/work" gate check cand.pt --baseline prod.pt --data eval.jsonl
#
# The container starts as root, as GitHub runs container actions (the workspace and the file-command files belong
# to the runner's uid, whatever it is); the entrypoint runs the gate itself as an unprivileged uid that owns nothing
# (gate/action/isolation.py) and hands the reports to the workspace with the workspace's ownership. tini is PID 1:
# it forwards SIGTERM (`docker stop`, a cancelled job) to the entrypoint, which ends with one `error:` line.
#
# Layers go from slowest-changing to fastest: torch and the dependencies are installed from pyproject.toml alone
# (nothing above them depends on a uid or on the code), so editing the code rebuilds only the last small layer.
FROM python:3.11-slim-bookworm

# The torch wheel index: CPU by default; a CUDA index (cu126, cu128, ...) that carries TORCH_VERSION for GPUs.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG GATE_EXTRAS=all
# A package index of your own (a mirror, a proxy); the CA bundle that proxy needs goes in as the build secret
# `pip_ca`, never into a layer. PIP_FIND_LINKS: a folder of wheels mounted for the build (an air-gapped builder).
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_FIND_LINKS=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# tini: an init that forwards signals (Python as PID 1 ignores SIGTERM).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/gate-src

# 1. torch, then every dependency and extra (ONNX, transformers, torchao), from the project metadata only. torch's
#    own test suite and C++ headers (about 145 MB) are not needed to run models, and go in the same layer.
COPY pyproject.toml ./
COPY .ci/install.sh .ci/install.sh
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && if [ -n "${PIP_INDEX_URL}" ]; then export PIP_INDEX_URL; fi \
    && if [ -n "${PIP_EXTRA_INDEX_URL}" ]; then export PIP_EXTRA_INDEX_URL; fi \
    && if [ -n "${PIP_FIND_LINKS}" ]; then export PIP_FIND_LINKS; fi \
    && GATE_DEPS_ONLY=1 TORCH_INDEX_URL="${TORCH_INDEX_URL}" TORCH_VERSION="${TORCH_VERSION}" \
       .ci/install.sh /opt/venv "${GATE_EXTRAS}" \
    && rm -rf /opt/venv/lib/python3*/site-packages/torch/test /opt/venv/lib/python3*/site-packages/torch/include

# 2. The package itself, without touching the dependencies installed above.
COPY README.md ./
COPY gate gate
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-deps /opt/gate-src \
    && /opt/venv/bin/python -c "import gate.action.entrypoint, gate.cli" \
    && rm -rf /opt/gate-src/build /root/.cache

LABEL org.opencontainers.image.title="pytorch-gate" \
      org.opencontainers.image.description="Model-regression gate for PyTorch checkpoints (GitHub Action and CLI)" \
      org.opencontainers.image.source="https://github.com/gate-dev/gate" \
      org.opencontainers.image.licenses="Apache-2.0"

WORKDIR /work
# No arguments: the GitHub Action (reads INPUT_*). With arguments: the `gate` CLI, e.g. `check ...`.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/venv/bin/python", "-m", "gate.action.entrypoint"]
