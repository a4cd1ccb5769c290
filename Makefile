# The README's two commands: `make run` and `make test`. Everything else is optional.
PY ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_LINK_MODE := copy

.DEFAULT_GOAL := help
.PHONY: help install run test lint format bench-api bench-media bench-import bench-batches bench-pipeline bench-conversation bench-console clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	$(PY) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --python $(PY)
	@touch $@

install: $(VENV)/.installed ## create .venv and install the locked dependency set

run: $(VENV)/.installed ## serve API + media + workers on :8000 (embedded PostgreSQL unless DATABASE_URL is set)
	$(VENV)/bin/voice-service serve

test: $(VENV)/.installed ## run the test suite against a real PostgreSQL (embedded unless DATABASE_URL is set)
	$(VENV)/bin/python -m pytest

lint: $(VENV)/.installed ## ruff, the import contracts ([tool.importlinter]) and mypy --strict ([tool.mypy]) from pyproject.toml
	$(VENV)/bin/ruff check voice_service providers analysis tests bench
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff format voice_service providers analysis tests bench

bench-api bench-media bench-import bench-batches bench-pipeline bench-conversation bench-recording bench-console: $(VENV)/.installed ## benchmarks: print figures (not part of `make test`)
	$(VENV)/bin/python -m bench.$(subst -,_,$@)

clean:
	rm -rf .tools $(VENV) .pytest_cache
