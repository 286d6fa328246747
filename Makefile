# `make test`: install what the tests need (apt + pip) and run every test.
# Kernel tests need root (network namespaces); without root they skip with a reason.
PYTHON ?= python3
APT_PKGS := iptables iproute2 graphviz nftables

.PHONY: test deps lint bench fixtures

test: deps
	$(PYTHON) -m pytest -q

# deps installs kpsim editable on purpose (and says so): the tests run on this checkout.
deps:
	@missing=""; \
	command -v iptables-restore >/dev/null || missing="$$missing iptables"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v dot >/dev/null || missing="$$missing graphviz"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS); \
	  else echo "missing:$$missing (apt-get install$$missing as root; kernel tests will skip)"; fi; \
	fi
	@echo "make deps: pip install -e '.[dev]' into $$($(PYTHON) -c 'import sys; print(sys.prefix)') (editable: kpsim now runs this checkout)"
	$(PYTHON) -m pip install -q -e '.[dev]'

lint: deps
	ruff check src tests bench
	ruff format --check src tests bench
	mypy src

bench: deps
	$(PYTHON) bench/run.py
	$(PYTHON) bench/sim_bench.py
	$(PYTHON) bench/fetch_bench.py

fixtures:
	$(PYTHON) -m kpsim.inputs.regen
	$(PYTHON) -m kpsim.inputs.nft_regen
