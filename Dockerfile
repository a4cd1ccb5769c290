# Multi-stage build: resolve the locked dependency set with uv, run as a non-root user.
FROM python:3.11-slim AS build
ENV UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/venv UV_LINK_MODE=copy
RUN pip install --no-cache-dir "uv==0.13.8"
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY voice_service voice_service
COPY providers providers
COPY analysis analysis
COPY sql sql
RUN uv sync --locked --no-dev --no-editable

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 voice
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH DATA_DIR=/data PYTHONUNBUFFERED=1
RUN mkdir -p /data && chown voice /data
USER voice
EXPOSE 8000
STOPSIGNAL SIGTERM
CMD ["voice-service", "serve"]
