# The commands of the README: `make demo`, `make demo-biased` and `make test`.
# Each creates .venv on first use (scripts/install.sh) and reuses it after.
PY := .venv/bin/python

.PHONY: venv demo demo-biased test lint bench
venv:
	@bash scripts/install.sh

demo: venv
	$(PY) -m experiments.demo

# ERM, class-balanced, TML, L2RW, MW-Net on the embedded long-tailed glyphs, 3 seeds each
demo-biased: venv
	$(PY) -m experiments.demo_biased

test: venv
	$(PY) -m pytest -q

lint: venv
	$(PY) -m ruff check taml experiments tests benchmarks main.py data examples

bench: venv
	$(PY) benchmarks/sampler.py
