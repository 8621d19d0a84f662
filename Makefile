# wagtail-own-smtp: the demo, the tests, the checks.
#
#   make demo    the example survey site with its demo mail servers and inbox
#   make test    the test suite (SQLite; OWN_SMTP_TEST_DB=postgres for PostgreSQL); on Wagtail 7.4 LTS:
#                make test VENV=.venv-w74 WAGTAIL="wagtail>=7.4,<7.5"
#   make test-slow  the slow suite (tests/faults: faults, killed workers, several clusters) on
#                PostgreSQL and Redis at 127.0.0.1; its figures go to tests/artifacts/fault-figures.json
#   make lint    ruff and the migration check
#   make package build the sdist and wheel and check what they ship
#   make screenshots  refresh docs/screenshots from the browser tests
#   make bench   the benchmark suite (bench/README.md); QUICK=1 for a short run, N=, K=
#
# Everything runs in a virtualenv; choose it and the versions with variables, e.g.
#   make test PYTHON=python3.13 VENV=.venv-313 DJANGO="Django>=6.1,<6.2"

PYTHON ?= python3.11
VENV ?= .venv
DJANGO ?=
WAGTAIL ?=
PYTEST_ARGS ?=

BIN := $(abspath $(VENV))/bin
MANAGE := $(BIN)/python example_project/manage.py
REQUIREMENTS := $(if $(DJANGO),"$(DJANGO)") $(if $(WAGTAIL),"$(WAGTAIL)")

.PHONY: demo demo-reset test test-slow lint screenshots package install

demo: install
	$(MANAGE) demo_setup
	$(MANAGE) demo_run

# Forget the demo's database, mail and certificates.
demo-reset:
	rm -rf example_project/var

# $(call pytest,environment,arguments). pytest exits with 5 when it collected no test: that
# fails here too, and says so.
define pytest
	@status=0; $(1) $(BIN)/python -m pytest $(2) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make $@: pytest ran no test, which counts as a failure" >&2; fi; \
	exit $$status
endef

test: install
	$(call pytest,,$(PYTEST_ARGS))

# The slow suite (tests/faults: outages, killed workers, clock skew, several clusters) on
# PostgreSQL, with Redis on 127.0.0.1 (.ci/run starts both); plain `make test` skips it.
test-slow: install
	$(call pytest,OWN_SMTP_SLOW=1 OWN_SMTP_TEST_DB=postgres,tests/faults $(PYTEST_ARGS))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python -m django makemigrations wagtail_own_smtp --check --dry-run
	@var=$$(mktemp -d); status=0; \
	SURVEY_DEMO_VAR=$$var $(MANAGE) makemigrations home survey --check --dry-run --skip-checks || status=$$?; \
	rm -rf $$var; exit $$status

# Refresh the README's pictures (docs/screenshots) from the browser tests.
screenshots: install
	OWN_SMTP_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/browser $(PYTEST_ARGS)

package: install
	$(BIN)/python -m pip install --quiet build
	$(BIN)/python scripts/check_package.py

# pip runs again only when the requirements change (a stamp per DJANGO/WAGTAIL choice), so
# `make test` runs side by side (.ci/run) do not rewrite the source tree's egg-info at once.
INSTALLED := $(abspath $(VENV))/.installed-$(shell printf '%s' '$(REQUIREMENTS)' | cksum | cut -d' ' -f1)

install: $(INSTALLED)

$(INSTALLED): pyproject.toml example_project/requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[testing,demo]" -r example_project/requirements.txt $(REQUIREMENTS)
	@touch $@

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The benchmarks (bench/README.md) run in a virtualenv of their own, with the tools they compare
# against (django-post_office, django-mailer: skipped if they do not install) and the profilers.
# Knobs are passed through the environment: QUICK=1, N=<messages>, K=<rounds>, PARTS=..., PEERS=0,
# SITES=, PER_SITE=, DELAY_MS= (the sites part).
BENCH_VENV ?= .venv-bench
BENCH_BIN := $(abspath $(BENCH_VENV))/bin

.PHONY: bench bench-scale bench-install

bench: bench-install
	$(BENCH_BIN)/python -m bench.run

# Target 5: 100,000 queued messages over 1,000 sites on PostgreSQL.
bench-scale: bench-install
	$(BENCH_BIN)/python -m bench.scale

bench-install: $(BENCH_BIN)/python
	$(BENCH_BIN)/python -m pip install --quiet -e ".[testing]" -r bench/requirements.txt $(REQUIREMENTS)
	$(BENCH_BIN)/python -m pip install --quiet -r bench/requirements-peers.txt \
	|| echo "make bench: django-post_office or django-mailer did not install; the bench skips them" >&2

$(BENCH_BIN)/python:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install --quiet --upgrade pip
