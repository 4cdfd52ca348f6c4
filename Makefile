# The two entry points of the README: `make demo` and `make test` (`make test-fast`: the unit tier).
# Both create .venv and install the project (and its pinned CPU torch) on first use, at the exact
# versions of constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-fast test-kafka lint typecheck unit install clean bench lock

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,dev,demo]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/headline-scorer demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy artifact training export stream headline_scorer

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# The unit tier, for the edit-test loop: ruff and the tests without a broker, subprocess workers,
# training runs or Prometheus, in two pytest-xdist processes stealing work from each other (53-59 s on
# an idle 2-core machine). `make test` stays the full gate, in one process (its broker tests are timing-sensitive).
FAST_MARKERS := not slow and not kafka and not faults and not prometheus
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -n 2 --dist worksteal -m "$(FAST_MARKERS)"

# Every Kafka and fault test against Apache Kafka 4.x instead of the embedded broker, plus the
# 3-broker cluster faults (needs java 17+, and mvn with access to Maven Central on first use; the
# jars are cached in ~/.cache/headline-scorer). KAFKA_BOOTSTRAP_SERVERS=... uses an existing cluster.
test-kafka: $(STAMP)
	KAFKA_BROKER=apache $(BIN)/pytest -m "kafka or faults"

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --update-readme

# Re-resolve the dependencies of pyproject.toml in a scratch environment and write their exact versions.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(LOCK_VENV)/bin/python -m pip install --quiet '.[train,dev,demo]'
	{ sed -n '1,3p' constraints.txt; $(LOCK_VENV)/bin/python -m pip freeze --exclude headline-scorer \
		| sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV) build

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
