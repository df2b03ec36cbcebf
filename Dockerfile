# syntax=docker/dockerfile:1
# Multi-stage image, installed the way the README's run command installs: `uv sync --locked`
# from uv.lock. No Docker engine runs on the project's development machines; keep this plain.

FROM python:3.12-slim AS builder
ENV UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/workflow-engine
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock README.md LICENSE ./
COPY src ./src
RUN uv sync --locked --no-dev --no-editable --extra database --extra redis --extra monitoring

FROM python:3.12-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/workflow-engine --create-home workflow
COPY --from=builder /opt/workflow-engine /opt/workflow-engine
ENV PATH=/opt/workflow-engine/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/var/lib/workflow-engine \
    PYTHONUNBUFFERED=1
USER workflow
WORKDIR /var/lib/workflow-engine
EXPOSE 8080
# No curl in the slim image: the standard library does the probe.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8080\")}/health', timeout=5)"]
CMD ["workflow-engine"]
