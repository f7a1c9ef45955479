# giftrec: the two commands of the README's Quick start are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
HOST   ?= 127.0.0.1
SAMPLE ?= data/online_retail_sample.csv.gz
# The lock: every dependency at an exact version, compiled from setup.cfg by `make lock`.
LOCK   := requirements/dev.txt

.PHONY: run test lint typecheck install lock system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The locked versions, then giftrec itself without resolving anything again; re-run when the lock changes.
$(VENV)/.installed: $(LOCK) setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Re-compile the lock from setup.cfg after changing install_requires or the extras; pins that still fit
# are kept. Upgrades are taken on purpose: `make lock UPGRADE=1` (all) or `make lock UPGRADE=flask` (one).
# requirements/main.txt (runtime only) is compiled against dev.txt, so the two never disagree.
PIP_COMPILE = $(BIN)/pip-compile --quiet --strip-extras --allow-unsafe \
  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host
lock: | $(BIN)/python
	@test -x $(BIN)/pip-compile || $(BIN)/python -m pip install --quiet pip-tools
	$(PIP_COMPILE) $(if $(filter 1,$(UPGRADE)),--upgrade,$(addprefix --upgrade-package ,$(UPGRADE))) \
	  --extra test --extra dev --output-file requirements/dev.txt setup.cfg
	$(PIP_COMPILE) --upgrade --constraint requirements/dev.txt --output-file requirements/main.txt setup.cfg

# Migrate, import the bundled sample, seed the generated demo dates, train (the model, then the next-purchase
# ranker, about 15 s of CPU on the sample), plan today's selections (the VIP
# ones wait in /manage), then serve web + scheduler.
run: install
	$(BIN)/giftrec db upgrade
	$(BIN)/giftrec import orders $(SAMPLE) --format online-retail --quiet
	$(BIN)/giftrec demo seed
	$(BIN)/giftrec train --if-stale
	$(BIN)/giftrec train --next-purchase --if-stale
	$(BIN)/giftrec jobs run plan-selections
	$(BIN)/giftrec keys demo --origin http://$(HOST):$(PORT) --origin http://localhost:$(PORT)
	GIFTREC_SERVER_BASE_URL=http://$(HOST):$(PORT) GIFTREC_DEMO_ENABLED=true \
	  $(BIN)/giftrec serve --host $(HOST) --port $(PORT) --with-scheduler

# The browser tests drive Debian's chromium; install it when we may (root with apt-get), else say how.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "make test needs Debian's chromium for the browser tests: sudo apt-get install chromium"; exit 1; fi; }

test: install system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy recommender domain config api jobs

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
