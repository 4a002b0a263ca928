# skelseg: set-up, demo and tests.
#
#   make demo   set everything up, then segment a bundled sequence with the bundled model
#   make test   set everything up, then run the whole test suite
#
# Set-up keeps what is expensive outside the checkout, in $(CACHE), so fresh clones and CI
# reruns reuse it: the Python venv with torch (4.7 GB) and the cargo target dir. A second run
# skips everything that is already there. To build against a libtorch 2.13.0 you already have,
# run `make LIBTORCH=/path/to/libtorch ...`: no venv is created then.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

TORCH_VERSION := 2.13.0
CACHE ?= $(HOME)/.cache/skelseg
VENV ?= $(CACHE)/venv
PYTHON ?= python3

ifeq ($(origin LIBTORCH), undefined)
LIBTORCH := $(CACHE)/libtorch
TORCH_STAMP := $(VENV)/.skelseg-torch-$(TORCH_VERSION)
else
TORCH_STAMP :=
endif
export LIBTORCH
export LIBTORCH_CXX11_ABI ?= 1
export CARGO_TARGET_DIR ?= $(CACHE)/target

CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/release/skelseg

.PHONY: setup build demo install test test-zenoh lint fmt bench clean-cache viewer-picture

## setup: torch venv (reused from the cache when present) and the .libtorch link for IDE builds
setup: $(TORCH_STAMP)
	@test -e "$(LIBTORCH)/lib/libtorch.so" || { echo "no libtorch.so under LIBTORCH=$(LIBTORCH)" >&2; exit 1; }
	@ln -sfn "$(LIBTORCH)" .libtorch

$(TORCH_STAMP):
	@mkdir -p "$(CACHE)"
	@test -x "$(VENV)/bin/python" || $(PYTHON) -m venv "$(VENV)"
	"$(VENV)/bin/pip" install --disable-pip-version-check --progress-bar off "torch==$(TORCH_VERSION)"
	@ln -sfn "$$("$(VENV)/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')" "$(CACHE)/libtorch"
	@touch "$@"

## FEATURES: extra cargo features for build, e.g. `make build FEATURES=...`
FEATURES ?=
build: setup
	$(CARGO) build --release --locked --bins --examples $(if $(FEATURES),--features $(FEATURES))

## demo: the main job on the embedded default (bundled model, bundled sequence)
demo: build
	"$(BIN)" demo

## install: `skelseg` into ~/.cargo/bin (on PATH with a standard Rust install). The bundled model
## is embedded in the binary, so it runs from any folder; libtorch is found through the rpath
## set at build time, so keep $(LIBTORCH) where it is.
install: setup
	$(CARGO) install --locked --path . --root "$${CARGO_INSTALL_ROOT:-$$HOME/.cargo}"

## test: tests a clone may be unable to run are #[ignore]d with the reason, so plain `cargo test`
## lists them as ignored instead of failing (or passing without checking anything):
##   "needs ../shared/data": the real datasets beside the checkout (not redistributable, so not in
##     the repository; CI has them). Run when ../shared/data exists; otherwise one line says how
##     many were left out.
##   "needs a CUDA GPU": test functions named cuda_*. Run when `nvidia-smi -L` lists a GPU;
##     `make test CUDA_TESTS=1` forces them (they fail without a device), CUDA_TESTS=0 leaves them out.
##   "needs the torch venv": tests/twin.rs, named twin_*, compare skelseg with its PyTorch twin
##     (python/skelseg_twin.py) run by $(VENV)/bin/python. Run in their own pass when that exists
##     (setup creates it unless LIBTORCH was given).
## The ignored tests run in a second pass (`--ignored`) rather than with `--include-ignored` on the
## first: the criterion bench that `--all-targets` runs rejects that flag.
SHARED_DATA := ../shared/data
HAVE_SHARED := $(if $(wildcard $(SHARED_DATA)),1,0)
ifeq ($(origin CUDA_TESTS), undefined)
CUDA_TESTS := $(if $(shell nvidia-smi -L >/dev/null 2>&1 && echo y),1,0)
endif
# Harness arguments of the second pass; empty when it has nothing to run.
IGNORED_PASS := $(if $(filter 1,$(HAVE_SHARED)),--ignored --skip twin_$(if $(filter 1,$(CUDA_TESTS)),, --skip cuda_),$(if $(filter 1,$(CUDA_TESTS)),--ignored cuda_))
count_ignored = $$(grep -rF 'ignore = "needs $(1)' src tests | wc -l)

test: setup
	$(CARGO) test --release --locked --all-targets --no-fail-fast
	$(if $(IGNORED_PASS),$(CARGO) test --release --locked --tests --no-fail-fast -- $(IGNORED_PASS))
	@if test -x "$(VENV)/bin/python"; then \
		SKELSEG_TWIN_PYTHON="$(VENV)/bin/python" $(CARGO) test --release --locked --test twin --no-fail-fast -- --ignored twin_; \
	else \
		echo "make test: $(call count_ignored,the torch venv) twin test(s) left out: no $(VENV)/bin/python (make setup creates it)"; \
	fi
	$(CARGO) test --release --locked --doc
ifeq ($(HAVE_SHARED),0)
	@echo "make test: $(call count_ignored,../shared/data) tests left out: they need $(SHARED_DATA) (real datasets, not redistributable), which is not beside this checkout"
endif
ifneq ($(CUDA_TESTS),1)
	@echo "make test: $(call count_ignored,a CUDA GPU) CUDA test(s) left out: no GPU listed by nvidia-smi (CUDA_TESTS=1 runs them)"
endif

## test-zenoh: only the Zenoh scale-out tests (feature `zenoh`, on by default, so `make test`
## runs them too: in-process peers and CLI workers on loopback, multicast scouting off)
test-zenoh: setup
	$(CARGO) test --release --locked --test zenoh --no-fail-fast

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

bench: setup
	$(CARGO) bench --locked

clean-cache:
	rm -rf "$(CACHE)"

## viewer-picture: the README's screenshot. Replays the bundled sequence into an .rrd, opens it in
## the matching Rerun viewer under Xvfb with software Vulkan (lavapipe), and saves a screenshot.
RERUN_VENV ?= $(CACHE)/rerun-venv
viewer-picture: build
	@command -v xvfb-run >/dev/null || apt-get install -y xvfb mesa-vulkan-drivers libvulkan1
	@test -x "$(RERUN_VENV)/bin/rerun" || { $(PYTHON) -m venv "$(RERUN_VENV)" && "$(RERUN_VENV)/bin/pip" install rerun-sdk==0.36.3; }
	"$(CARGO_TARGET_DIR)/release/skelseg" stream --source file:fixtures/synth/skeleton/synth_0000.txt --viz save:$(CACHE)/viewer.rrd > /dev/null
	WGPU_BACKEND=vulkan xvfb-run -a -s "-screen 0 1600x1000x24" "$(RERUN_VENV)/bin/rerun" $(CACHE)/viewer.rrd --screenshot-to fixtures/readme/viewer.png || test -s fixtures/readme/viewer.png
