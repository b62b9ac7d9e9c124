# The README's commands: `make deploy` and `make test`. Everything installs itself from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all deploy test test-fast test-molecule test-multinode lint bench deps venv clean lab-up lab-down test-lab

all: test

deps:
	@tools/install-system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: deps $(STAMP)

lint: venv
	$(BIN)/ruff check control agents tests bench lab tools library plugins roles playbooks/files
	$(BIN)/mypy control agents
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint

## The whole suite, as CI runs it: lint; unit, API, integration (RabbitMQ, libvirt), conformance
## and lab tests; then the Molecule scenarios on lab nodes (deploy, idempotence, verify).
test: deps venv lint
	$(BIN)/python -m pytest tests
	$(MAKE) test-molecule

## Molecule on lab nodes (root): default (site.yml, idempotence, CLI verify), mariadb, rabbitmq,
## compute (guests on a compute node) and multinode (guests pinging over VXLAN, volumes
## from the storage node moved between computes);
## `make test-multinode` runs the last one alone.
MOLECULE_SCENARIOS ?= mariadb rabbitmq default compute multinode
test-molecule: venv
	for s in $(MOLECULE_SCENARIOS); do PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/molecule test -s $$s || exit 1; done

test-multinode: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/molecule test -s multinode

## The fast loop: unit and API tests only.
test-fast: venv
	$(BIN)/python -m pytest tests/unit tests/api -q

bench: deps venv
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

DEPLOY_INVENTORY = $(if $(LAB_NODES),.lab/lab-custom.yml,$(LAB_INVENTORY))

## Deploy Cirrus onto lab nodes; ends by printing how to use it (docs/deploy.md).
deploy: lab-up
	$(BIN)/ansible-playbook -i $(DEPLOY_INVENTORY) playbooks/site.yml

LAB_INVENTORY ?= inventory/lab.yml

## The lab (docs/lab.md). LAB_INVENTORY picks the hosts; LAB_NODES="controller=1 compute=3 storage=1"
## writes .lab/lab-custom.yml and boots that.
lab-up: venv
ifdef LAB_NODES
	$(BIN)/python lab/make-inventory.py $(LAB_NODES) --output .lab/lab-custom.yml
	$(BIN)/ansible-playbook -i .lab/lab-custom.yml playbooks/lab-up.yml
else
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/lab-up.yml
endif

lab-down: venv
	$(BIN)/ansible-playbook playbooks/lab-down.yml

test-lab: venv
	$(BIN)/python -m pytest tests/lab -m lab

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
