# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.11+) and install the project the first time.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install system-deps clean

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
	$(BIN)/lint-imports

system-deps:
	./scripts/install-system-deps.sh

# The daily tier: lint and every test that needs no server, cluster, browser, Docker engine,
# MNIST or minutes of training (about 4 minutes on 2 cores).
FAST := not slow and not postgres and not slurm and not browser and not mnist and not docker

test-fast: lint
	$(BIN)/python -m pytest -m "$(FAST)" --durations=10

# Everything: what .ci/run calls.
test: lint system-deps
	$(BIN)/python -m pytest --durations=20

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
