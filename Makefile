# Every target sets up what it needs: `make test` and `make demo` work on a fresh checkout.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test check pytest demo bench soak chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## The one command that installs everything and runs every check CI runs.
test: $(STAMP) check pytest

check: $(STAMP)
	$(BIN)/ruff check vod_events tests bench
	$(BIN)/ruff format --check vod_events tests bench
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

## Installs everything, then runs the daemon against the embedded local MNS server
## loaded with the seeds' sample events.
demo: $(STAMP)
	$(BIN)/vod-events demo

## Chaos: thousands of events, daemons SIGKILLed 30 times, faults injected; then the
## same with two replicas sharing Redis. Prints the accounting (lost must be 0).
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --events 3000 --kills 30
	$(BIN)/python bench/chaos.py --events 3000 --kills 20 --replicas 2 --dedupe redis

## Benchmarks: the consumer against the SDK-sample and batch-loop baselines, local MNS server
## with 10 ms per request; table on stdout, JSON and charts in bench/results/.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/bench_consumer.py

## 200,000 messages through the consumer, its RSS sampled (bench/results/consumer_soak_rss.png).
soak: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/bench_consumer.py --soak

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
