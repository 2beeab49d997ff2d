# servicemesh.istio: developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CLUSTER := hack/testcluster/cluster.sh
VENV := .venv/bin
INVENTORY ?= inventories/local
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PY_COLORS := 0
export ANSIBLE_NOCOLOR := 1

.PHONY: help setup site test lint sanity unit cluster-tests build-test cluster-start cluster-stop cluster-status molecule

help:
	@echo "make site           set everything up, start the local test cluster, run playbooks/site.yml on it"
	@echo "make test           set everything up and run the whole test suite (static gates, unit, cluster)"
	@echo "make lint           ansible-lint (production), yamllint, syntax checks"
	@echo "make sanity         ansible-test sanity on the collection"
	@echo "make unit           pytest tests/unit (no cluster needed)"
	@echo "make molecule [SCENARIO=default]  one molecule scenario on the local test cluster (starts it if needed)"
	@echo "make cluster-start | cluster-stop | cluster-status"

setup:
	@bash hack/setup.sh

cluster-start: setup
	@bash $(CLUSTER) start

cluster-stop:
	@bash $(CLUSTER) stop

cluster-status:
	@bash $(CLUSTER) status

site: cluster-start
	@start=$$(date +%s); rc=0; \
	bash $(CLUSTER) exec -- $(VENV)/ansible-playbook -i $(INVENTORY) -e @hack/testcluster/site-vars.yml playbooks/site.yml || rc=$$?; \
	bash hack/testcluster/site-report.sh $$start; exit $$rc

lint: setup
	@bash hack/lint.sh

sanity: setup
	@bash hack/sanity.sh

unit: setup
	@$(VENV)/pytest -m "not cluster" tests/unit tests/test_collection_build.py tests/test_execution_environment.py

test: setup
	@bash hack/test.sh

# molecule's scenarios live in molecule/ (not extensions/molecule/): say so, or molecule warns.
export MOLECULE_GLOB := molecule/*/molecule.yml
SCENARIO ?= default

molecule: setup
	@PATH="$(CURDIR)/.venv/bin:$$PATH" $(VENV)/molecule test -s $(SCENARIO)
