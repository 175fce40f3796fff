# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.11+) and install the project the first time.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install system-deps clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hpsearch run studies/quickstart.yaml

lint: $(STAMP)
	$(BIN)/ruff check hpsearch tests bench
	$(BIN)/ruff format --check hpsearch tests bench
	$(BIN)/mypy

system-deps:
	./scripts/install-system-deps.sh

test: lint system-deps
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
