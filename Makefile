# shield: `make run` serves, `make test` tests. Both install what is missing first.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PORT ?= 8000
APT_PACKAGES := libmagickwand-6.q16-6 libmagickcore-6.q16-6-extra icc-profiles-free
# The dashboard's browser tests drive Debian's Chromium (never a downloaded browser);
# the cluster tests start Debian's redis-server and haproxy on free loopback ports.
TEST_APT_PACKAGES := chromium fonts-dejavu-core redis-server haproxy
export PORT

.PHONY: run test screenshots lint format system-deps test-deps cluster-deps deps clean cluster

run: system-deps deps
	$(VENV)/bin/gunicorn -c gunicorn.conf.py app:app

test: system-deps test-deps deps
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# The README's dashboard pictures (docs/dashboard/), taken by the browser tests.
screenshots: system-deps test-deps deps
	SHIELD_SCREENSHOTS=docs/dashboard $(VENV)/bin/python -m pytest -q tests/test_dashboard.py

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: deps
	$(VENV)/bin/ruff format .

deps: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# ImageMagick's MagickWand (with its HEIF/WebP coders) and an sRGB ICC profile.
system-deps:
	@if ldconfig -p | grep -q 'libMagickWand-6.Q16.so' && [ -f /usr/share/color/icc/sRGB.icc ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	else \
		echo "shield needs ImageMagick's MagickWand library. Install it, then run make again:"; \
		echo "    sudo apt-get install $(APT_PACKAGES)"; \
		exit 1; \
	fi

test-deps:
	@if command -v chromium >/dev/null && command -v redis-server >/dev/null && command -v haproxy >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(TEST_APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEST_APT_PACKAGES) >/dev/null; \
	else \
		echo "the browser and cluster tests need Chromium, Redis and HAProxy; they are skipped without them:"; \
		echo "    sudo apt-get install $(TEST_APT_PACKAGES)"; \
	fi

# Cluster mode on this machine: Redis, two nodes and HAProxy (deploy/cluster.sh).
cluster: system-deps cluster-deps deps
	VENV=$(VENV) deploy/cluster.sh

cluster-deps:
	@if command -v redis-server >/dev/null && command -v haproxy >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server haproxy"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server haproxy >/dev/null; \
	else \
		echo "cluster mode needs Redis and HAProxy. Install them, then run make cluster again:"; \
		echo "    sudo apt-get install redis-server haproxy"; \
		exit 1; \
	fi

clean:
	rm -rf $(VENV) var .pytest_cache .benchmarks

# Benchmarks, with the numbers of their baselines (see BENCHMARKS.md).
# `make bench PHOTOS=/path/to/photos`; by default ../shared/images when it exists.
.PHONY: bench bench-deps
bench: system-deps deps bench-deps
	VENV=$(VENV) bench/bench.sh "$(PHOTOS)"

# bench/quality.py: Debian's libvips for pyvips (libvips42t64 from Debian 13 on), then the
# bench-only packages of bench/requirements.txt.
bench-deps: deps $(VENV)/.bench-installed
	@if ldconfig -p | grep -q 'libvips.so.42'; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq; \
		pkg=libvips42; apt-cache show libvips42t64 >/dev/null 2>&1 && pkg=libvips42t64; \
		echo "installing $$pkg"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkg >/dev/null; \
	else \
		echo "the quality benchmark compares with libvips. Install it, then run make again:"; \
		echo "    sudo apt-get install libvips42"; \
		exit 1; \
	fi

$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@
