# make run    start the Gradio app on http://127.0.0.1:7860
# make test   run the test suite
# make test-avx2  rerun the numerics tests with every kernel library pinned to AVX2, as on an AVX2-only CPU
# make bench  run the benchmarks (results in benchmarks/results/)
#
# Each target first brings .venv up to date: it is created when missing, the project is installed
# into it (editable, with the dev extra) whenever pyproject.toml changes, and, when make runs as
# root, the Debian packages below are installed once.

SHELL := /bin/bash
.DEFAULT_GOAL := test

VENV := .venv
PYTHON := $(VENV)/bin/python
BOOTSTRAP_PYTHON := $(shell command -v python3.11 || command -v python3)
# Debian packages the tests need (soundfile's wheel bundles libsndfile): espeak-ng speaks test sentences and
# sox trims and resamples them; chromium and its driver run the app in a real browser (tests/test_browser.py).
DEB_PACKAGES := espeak-ng sox chromium chromium-driver
# Debian packages the benchmarks' data needs: Fashion-MNIST, and the held-out voices and real
# recordings of the ASR evaluation set (pico, in non-free, is used when installed; see DATA.md); sox,
# WordNet's examples and festival's kal / ked voices for the speech-digits corpus.
BENCH_DEB_PACKAGES := dataset-fashion-mnist flite festival festvox-us-slt-hts pocketsphinx-testdata alsa-utils \
	sox wordnet-base festvox-kallpc16k festvox-kdlpc16k
# One process: on 2 cores, `-n 2` (pytest-xdist) measured slower, as torch already uses both.
PYTEST_ARGS ?= -q
BENCH_ARGS ?=

INSTALLED := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
DEBS := $(VENV)/.debs-$(shell echo '$(strip $(DEB_PACKAGES))' | sha256sum | cut -c1-16)

# The environment that makes torch (ATen), oneDNN, FBGEMM (int8) and MKL (float GEMM) use their AVX2
# kernels on a CPU that has more (AVX-512, AMX): the rounding an AVX2-only x86-64 machine gets.
AVX2_ONLY := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2

.PHONY: run test test-avx2 bench install

run: install
	$(PYTHON) app.py

test: install
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-avx2: install
	$(AVX2_ONLY) $(PYTHON) -m pytest $(PYTEST_ARGS) -m numerics

# Every benchmarks/*.py that runs as a script, as `python -m benchmarks.NAME $(BENCH_ARGS)`; all run,
# and the failures are listed at the end.
bench: install
	@if [ "$$(id -u)" = 0 ] && ! dpkg -s $(BENCH_DEB_PACKAGES) >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(BENCH_DEB_PACKAGES); fi
	@failed=""; for f in $$(grep -l '^if __name__ == "__main__"' benchmarks/*.py); do \
		echo "== $$f"; $(PYTHON) -m benchmarks.$$(basename $$f .py) $(BENCH_ARGS) || failed="$$failed $$f"; done; \
		if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi

install: $(INSTALLED) $(DEBS)

$(PYTHON):
	@# Debian's own Python needs python3-venv for `-m venv`.
	$(BOOTSTRAP_PYTHON) -m venv $(VENV) || { rm -rf $(VENV); [ "$$(id -u)" = 0 ] && apt-get update \
		&& apt-get install -y python3-venv && $(BOOTSTRAP_PYTHON) -m venv $(VENV); }

$(INSTALLED): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

$(DEBS): | $(PYTHON)
	@if [ -z "$(strip $(DEB_PACKAGES))" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(DEB_PACKAGES); \
	elif ! dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1; then \
		echo "the tests need these Debian packages: sudo apt-get install $(DEB_PACKAGES)"; exit 0; fi; \
	rm -f $(VENV)/.debs-*; touch $@
