# Quick start: `make demo` (demo training on generated data) and `make test` (lint + test suite).
# Both create .venv on first use (scripts/bootstrap.sh).
PY := .venv/bin/python

.PHONY: venv demo benchmark test lint format clean

venv:
	@bash scripts/bootstrap.sh

demo: venv
	$(PY) tools/demo.py

# FMA-Net's demo and the four demo baselines trained with one budget, then one table and plot (ITERS=800: hours on
# 2 CPU cores; e.g. `make benchmark ITERS=20` for the whole path in minutes). Output: results/benchmark_baselines
ITERS ?= 800
benchmark: venv
	$(PY) tools/benchmark_baselines.py --iters $(ITERS)

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
