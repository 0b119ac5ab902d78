# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= ./data

.PHONY: run test lint format install install-test bench clean

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed; on Debian: apt-get install python3-venv" >&2; exit 1; }
	@$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when the project's metadata changes.
$(VENV)/.stamp-install: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@ $(VENV)/.stamp-install

install: $(VENV)/.stamp-install
install-test: $(VENV)/.stamp-test

## make run: a working store in ./data with a demo account, every service in the foreground.
run: install
	$(BIN)/msgstore --data $(DATA) demo
	exec $(BIN)/msgstore --data $(DATA) serve

## make test: lint, types, layer contract, the whole suite (local and PostgreSQL storage
## contract), then the IMAP, POP3 and LMTP protocol suites again on the PostgreSQL backend.
PYTEST_JOBS ?= 3
PG_PROTOCOL_SUITES := tests/test_conversations.py tests/imap_server tests/imap_clients tests/pop3 tests/lmtp
test: install-test lint
	@# Byte-compile once: with PYTHONDONTWRITEBYTECODE set, every CLI process would recompile src/.
	$(BIN)/python -m compileall -q src tests
	$(BIN)/python -m pytest -n $(PYTEST_JOBS) --dist loadfile
	$(BIN)/python -m pytest -n $(PYTEST_JOBS) --dist loadfile -p tests.storage.postgres.protocol_plugin $(PG_PROTOCOL_SUITES)

lint: install-test
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install-test
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

## make bench: performance runs (not part of make test); see docs/benchmarks.md.
bench: install-test
	$(BIN)/python -m bench.store

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
