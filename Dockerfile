# The gate in a container: the GitHub Action's image (action.yml builds it) and a plain CLI image.
#
#   docker build -t gate .                                              # CPU torch (default)
#   docker build -t gate:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#   docker run --rm -v "$PWD:/work" gate check cand.pt --baseline prod.pt --data eval.jsonl
#
# Layers go from slowest-changing to fastest: torch and the dependencies are installed from pyproject.toml alone,
# so editing the code rebuilds only the last small layer.
FROM python:3.11-slim-bookworm

# The torch wheel index: CPU by default; a CUDA index (cu126, cu128, ...) that carries TORCH_VERSION for GPUs.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG GATE_EXTRAS=all
# uid 1001 is the `runner` user of GitHub-hosted runners, who owns the workspace and the files behind
# $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY. On a self-hosted runner, build with that runner's uid.
ARG GATE_UID=1001

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/gate-src

# 1. torch, then every dependency and extra (ONNX, transformers), from the project metadata only.
COPY pyproject.toml ./
COPY .ci/install.sh .ci/install.sh
RUN GATE_DEPS_ONLY=1 TORCH_INDEX_URL="${TORCH_INDEX_URL}" TORCH_VERSION="${TORCH_VERSION}" \
    .ci/install.sh /opt/venv "${GATE_EXTRAS}"

# 2. The package itself, without touching the dependencies installed above.
COPY README.md ./
COPY gate gate
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-deps /opt/gate-src \
    && /opt/venv/bin/python -c "import gate.action.entrypoint, gate.cli" \
    && groupadd --gid "${GATE_UID}" gate \
    && useradd --create-home --uid "${GATE_UID}" --gid "${GATE_UID}" --shell /usr/sbin/nologin gate

LABEL org.opencontainers.image.title="pytorch-gate" \
      org.opencontainers.image.description="Model-regression gate for PyTorch checkpoints (GitHub Action and CLI)" \
      org.opencontainers.image.licenses="Apache-2.0"

USER ${GATE_UID}:${GATE_UID}
WORKDIR /work
# No arguments: the GitHub Action (reads INPUT_*). With arguments: the `gate` CLI, e.g. `check ...`.
ENTRYPOINT ["/opt/venv/bin/python", "-m", "gate.action.entrypoint"]
