# The front door. `make run` starts Stoker with examples; `make test` runs every test.
# Everything installs itself: uv (pinned) into ~/.cache/stoker/tools, the locked Python
# dependencies into .venv, the control plane from Go modules into ~/.cache/stoker/bin.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CACHE ?= $(HOME)/.cache/stoker
UV_VERSION := 0.13.8
UV := $(CACHE)/tools/bin/uv
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help run run-process images test test-unit lint lock crds check-crds api-docs \
        check-api-docs control-plane up down bench-scheduled \
        bench-writes bench-recurring bench-queue bench-throughput bench-scale bench-realnode clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(CACHE)/tools
	$(CACHE)/tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# requirements*.lock pin every dependency by hash; `make lock` refreshes them after a change
# to pyproject.toml (uv's own uv.lock stays local: it records download addresses).
.venv/.synced: $(UV) pyproject.toml requirements.lock
	$(UV) venv --quiet --allow-existing --python python3 .venv
	$(UV) pip sync --quiet --python .venv/bin/python --require-hashes requirements.lock
	$(UV) pip install --quiet --python .venv/bin/python --no-deps -e .
	touch $@

lock: $(UV)  ## re-resolve dependencies from pyproject.toml into the hash-pinned lock files
	$(UV) lock --quiet
	$(UV) export --frozen --all-groups --no-emit-project --quiet -o requirements.lock
	$(UV) export --frozen --no-dev --no-emit-project --quiet -o requirements-runtime.lock

control-plane:  ## build etcd, kube-*, kwok, helm, kubectl from Go modules (cached)
	hack/build-control-plane.sh >/dev/null

run: .venv/.synced control-plane  ## local cluster with a real node + images + the chart (2 replicas) + examples
	hack/run.sh

run-process: .venv/.synced control-plane  ## the fast loop: operator as a local process (current context or local cluster)
	hack/run.sh --process

images:  ## build the operator, runner and pause images without Docker (cached in ~/.cache/stoker/images)
	hack/images.sh build

test: .venv/.synced control-plane lint check-crds check-api-docs  ## every test: unit, chart, images, cluster
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

test-unit: .venv/.synced  ## the fast tests that need no cluster
	$(PY) -m pytest -p no:cacheprovider -m "not cluster" $(PYTEST_ARGS)

lint: .venv/.synced  ## ruff and mypy
	$(PY) -m ruff check operator tests job_images
	$(PY) -m ruff format --check operator tests job_images
	$(PY) -m mypy

crds: .venv/.synced  ## regenerate crds/ (and the chart's copies) from the models
	$(PY) -m stoker.api.crds write crds/
	cp crds/*.yaml charts/stoker/crds/

check-crds: .venv/.synced  ## fail when crds/ is stale
	$(PY) -m stoker.api.crds check crds/

api-docs: .venv/.synced  ## regenerate docs/api-reference.md from the CRDs and models
	$(PY) -m stoker.api.reference write docs/api-reference.md

check-api-docs: .venv/.synced  ## fail when docs/api-reference.md is stale
	$(PY) -m stoker.api.reference check docs/api-reference.md

up: control-plane  ## start the local cluster (prints its env)
	hack/cluster.sh up

down:  ## delete the local cluster
	hack/cluster.sh down

bench-scheduled: .venv/.synced control-plane  ## operator RSS and idle CPU with 10,000 Scheduled jobs
	$(PY) tests/bench/bench_scheduled.py

bench-writes: .venv/.synced control-plane  ## API writes per job
	$(PY) tests/bench/bench_writes.py

bench-recurring: .venv/.synced control-plane  ## 200 RecurringJobs vs 200 CronJobs: schedule lag
	$(PY) tests/bench/bench_recurring.py

bench-queue: .venv/.synced control-plane  ## 2,000 jobs through a queue of concurrency 50
	$(PY) tests/bench/bench_queue.py

bench-throughput: .venv/.synced control-plane  ## Jobs vs BackgroundJobs side by side: jobs/s, CPU and writes per job
	$(PY) tests/bench/bench_throughput.py

bench-scale: .venv/.synced control-plane  ## 50,000 finished jobs + 1,000 RecurringJobs: RSS, startup, create->pod
	$(PY) tests/bench/bench_scale.py

bench-throughput: .venv/.synced control-plane  ## Jobs vs BackgroundJobs side by side: jobs/s, CPU and writes per job
	$(PY) tests/bench/bench_throughput.py

bench-scale: .venv/.synced control-plane  ## 50,000 finished jobs + 1,000 RecurringJobs: RSS, startup, create->pod
	$(PY) tests/bench/bench_scale.py

bench-realnode: .venv/.synced control-plane  ## real node: created->container started p50/p99, failover time
	$(PY) tests/bench/bench_realnode.py

clean:  ## remove the venv (the cache outside the repo stays)
	rm -rf .venv
