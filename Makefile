# Quick start: `make demo` (demo training on generated data) and `make test` (lint + test suite).
# Both create .venv on first use (scripts/bootstrap.sh).
PY := .venv/bin/python

.PHONY: venv demo test lint format clean

venv:
	@bash scripts/bootstrap.sh

demo: venv
	$(PY) tools/demo.py

test: venv lint
	$(PY) -m pytest -q tests

lint: venv
	.venv/bin/ruff check fmanet_plugin tools tests setup.py
	.venv/bin/ruff format --check fmanet_plugin tools tests setup.py

format: venv
	.venv/bin/ruff check --fix fmanet_plugin tools tests setup.py
	.venv/bin/ruff format fmanet_plugin tools tests setup.py

clean:
	rm -rf experiments tb_logger results datasets/demo
