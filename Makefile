# Two commands do all set-up on a fresh machine with Python 3.11 and Java 17:
#   make demo   - .venv + the project, then the demo on embedded defaults
#   make test   - .venv + dev tools, system packages, PostgreSQL, then pytest
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
SHOPFLOOR_HOME ?= $(CURDIR)/.shopfloor
export SHOPFLOOR_HOME
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: demo dashboard test soak crash scale outage deployruns install install-dev jdbc-jars system-deps postgres mosquitto lint clean \
	image docker-pool docker-test docker-ci scale-soak

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/.installed $@

install: $(BIN)/.installed

install-dev: $(BIN)/.installed-dev

# The demo keeps its Prefect state (ephemeral mode, no server) under SHOPFLOOR_HOME.
demo: install jdbc-jars
	mkdir -p $(SHOPFLOOR_HOME)/prefect
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect $(BIN)/shopfloor demo

# The plant dashboard on the same embedded defaults (run `make demo` first to fill them):
# http://127.0.0.1:8501. DASHBOARD_ARGS passes options, e.g. "--port 8600 --timezone X".
DASHBOARD_ARGS ?=
dashboard: install
	mkdir -p $(SHOPFLOOR_HOME)/prefect
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect $(BIN)/shopfloor dashboard $(DASHBOARD_ARGS)

jdbc-jars:
	bash scripts/ensure-system-deps.sh --jars-only

system-deps:
	bash scripts/ensure-system-deps.sh

postgres: system-deps
	bash scripts/ensure-postgres.sh

# The MQTT tests' broker (tests/integration/mqtt): Mosquitto on 127.0.0.1:1883.
mosquitto:
	bash scripts/ensure-mosquitto.sh

# Coverage of the product code is reported by every pytest run (pyproject.toml); the whole
# suite must keep at least this much (measured 92.3 % when the floor was raised to 90).
COVERAGE_FLOOR ?= 90
# Two pytest workers, one test file each at a time: every session fixture (PostgreSQL and
# MariaDB databases, moto, the Prefect harness) is per worker, and a file's module
# fixtures (a Prefect server, a Spark session) stay in one worker. Much of the suite
# waits on servers and subprocesses, so two workers pay off even on two cores.
TEST_WORKERS ?= 2

test: install-dev postgres mosquitto
	mkdir -p $(SHOPFLOOR_HOME)/prefect-test
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect-test $(BIN)/pytest -n $(TEST_WORKERS) \
		--dist loadfile --no-loadscope-reorder --cov-fail-under=$(COVERAGE_FLOOR)

# The soak test (docs/operations.md): the scheduled chain on a real Prefect server and a
# worker for SOAK_SECONDS with faults injected; `make test` runs a 180 s version of it.
SOAK_SECONDS ?= 660
soak: install-dev postgres
	mkdir -p $(SHOPFLOOR_HOME)/prefect-test
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect-test SHOPFLOOR_SOAK_SECONDS=$(SOAK_SECONDS) \
		$(BIN)/pytest -s --no-cov tests/e2e/test_soak.py
	$(MAKE) crash

# Plant scale (docs/modbus.md): one modbus-capture run polls SCALE_DEVICES simulated
# devices of 20 tags every second for SCALE_SECONDS; every slot of every device must be
# found. `make test` runs an 80-device, 10 s version of it.
SCALE_DEVICES ?= 500
SCALE_SECONDS ?= 120
scale: install-dev postgres
	mkdir -p $(SHOPFLOOR_HOME)/prefect-test
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect-test SHOPFLOOR_SCALE_DEVICES=$(SCALE_DEVICES) \
		SHOPFLOOR_SCALE_SECONDS=$(SCALE_SECONDS) $(BIN)/pytest --no-cov -q -m scale \
		tests/integration/modbus/test_modbus_scale.py

# Outages (the `outage` marker): a flow's database stopped under it and started again,
# then every record and tag checked once (about 2 minutes each; not in `make test`).
outage: install-dev postgres
	mkdir -p $(SHOPFLOOR_HOME)/prefect-test
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect-test $(BIN)/pytest --no-cov -q -m outage tests/integration

# The capture-to-lake deployments (modbus-capture from a line file, mqtt-ingest,
# tag-lake-export) on a real prefect server and a process worker, their schedules every
# minute, for DEPLOYRUNS_SECONDS against a simulator and Mosquitto; checked row by row.
DEPLOYRUNS_SECONDS ?= 240
deployruns: install-dev postgres mosquitto
	mkdir -p $(SHOPFLOOR_HOME)/prefect-test
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect-test SHOPFLOOR_DEPLOYRUNS_SECONDS=$(DEPLOYRUNS_SECONDS) \
		$(BIN)/pytest --no-cov -q -m deployruns tests/e2e/test_capture_to_lake_deployments.py

# Plant-scale soak (docs/modbus.md): SCALE_SOAK_DEVICES devices of 20 tags every second
# for SCALE_SOAK_SECONDS in one run, SCALE_SOAK_FAULTY_PERCENT of them dead (refused,
# never answering) or slow (answers later than the interval); every slot of every
# healthy device written once, the faulty ones marked "no answer". Not in `make test`.
SCALE_SOAK_DEVICES ?= 500
SCALE_SOAK_SECONDS ?= 600
SCALE_SOAK_FAULTY_PERCENT ?= 5
scale-soak: install-dev postgres
	mkdir -p $(SHOPFLOOR_HOME)/prefect-test
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect-test SHOPFLOOR_SCALE_SOAK_DEVICES=$(SCALE_SOAK_DEVICES) \
		SHOPFLOOR_SCALE_SOAK_SECONDS=$(SCALE_SOAK_SECONDS) \
		SHOPFLOOR_SCALE_SOAK_FAULTY_PERCENT=$(SCALE_SOAK_FAULTY_PERCENT) \
		$(BIN)/pytest --no-cov -q -s -m scale tests/integration/modbus/test_modbus_scale_soak.py

# Crash schedules (docs/operations.md): every publishing flow killed with kill -9 at
# seeded moments, several times in a row, then recovered; CRASH_SCHEDULES per flow (`make
# test` runs a handful). CRASH_SEEDS=1,2 replays given seeds.
CRASH_SCHEDULES ?= 200
CRASH_SEEDS ?=
crash: install-dev postgres
	mkdir -p $(SHOPFLOOR_HOME)/prefect-test
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect-test SHOPFLOOR_CRASH_SCHEDULES=$(CRASH_SCHEDULES) \
		SHOPFLOOR_CRASH_SEEDS=$(CRASH_SEEDS) $(BIN)/pytest --no-cov -q -n $(TEST_WORKERS) \
		--dist load tests/crash

# The image for the Docker work pool (README "Run it on Docker"), with no registry and no
# package index inside the build: the Python packages come from a wheelhouse built here
# (outside git), the base is BASE_IMAGE or, when that cannot be pulled, a local Debian
# bookworm made once by debootstrap (scripts/docker-base.sh, as root). The engine must be
# running; every build step uses the host's network (apt, nothing else).
DOCKER ?= docker
IMAGE ?= shopfloor:latest
BASE_IMAGE ?= python:3.11-slim-bookworm
WHEELHOUSE := .shopfloor/wheelhouse

$(WHEELHOUSE).built: pyproject.toml scripts/docker-wheelhouse.sh $(BIN)/.installed
	bash scripts/docker-wheelhouse.sh $(BIN)/python $(WHEELHOUSE)
	touch $@

image: $(WHEELHOUSE).built
	base=$$(DOCKER=$(DOCKER) bash scripts/docker-base.sh $(BASE_IMAGE)) \
	  && $(DOCKER) build --network host --build-arg BASE_IMAGE=$$base -t $(IMAGE) .
	$(DOCKER) image ls $(IMAGE)

# The Docker work pool from deployments/docker-pool.json (created, or updated in place):
# never pulls the local image, removes containers, host network, the buffer and lake
# volumes. PREFECT_API_URL must name the server; CONTAINER_API_URL is the URL the flow-run
# containers use (default: the template's http://127.0.0.1:4200/api).
DOCKER_POOL ?= shopfloor-docker
CONTAINER_API_URL ?=
docker-pool: install
	$(BIN)/python -m deployments.docker_pool --pool $(DOCKER_POOL) \
		$(if $(CONTAINER_API_URL),--api-url $(CONTAINER_API_URL))

# One real flow run in a container (tests/docker): a prefect server, the pool from the
# template, a Docker worker, the demo. Needs the engine and `make image`; `make test`
# leaves it out (the `docker` marker), since CI may have no Docker engine.
docker-test: install-dev
	mkdir -p $(SHOPFLOOR_HOME)/prefect-test
	PREFECT_HOME=$(SHOPFLOOR_HOME)/prefect-test $(BIN)/pytest --no-cov -rP -m docker tests/docker

# The Docker suite from a bare machine (scripts/ci-docker.sh): docker.io and debootstrap
# installed when missing, dockerd started when none runs (and stopped after), `make image`,
# `make docker-test`, no container left. Prints `SKIP docker-ci: <reason>` and succeeds only
# when no engine can run here; a failing test fails it.
docker-ci:
	bash scripts/ci-docker.sh

lint: install-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .shopfloor
