# The documented ways to build, test, run and measure Flotilla.
#
#   make run      operator on the embedded SQLite, reconciling examples/, dashboard URL printed
#   make test     every test (installs what it needs: haproxy, postgresql, the runner image)
#   make bench    benchmarks; print figures
#   make lint     cargo fmt --check, clippy -D warnings, CRD drift check
#   make crds     regenerate crds/ from the binary
#   make fuzz     every fuzz target for FUZZ_SECONDS (default 600) each, then schemathesis

export CARGO_TARGET_DIR ?= $(HOME)/.cache/flotilla-target
BIN := $(CARGO_TARGET_DIR)/debug/flotilla
DATA_DIR ?= ./data

include mk/infra.mk

.PHONY: build test run crds lint bench deps fuzz

build:
	cargo build --all-targets

# Installs the system packages the tests use (needs root; no-op when present).
deps:
	@bash scripts/install-deps.sh

test: deps runner-image
	@command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
	cargo build --all-targets
	cargo nextest run --no-fail-fast

run: build runner-image
	@mkdir -p -m 700 $(DATA_DIR)
	@test -s $(DATA_DIR)/dev-encryption-key || (umask 077; $(BIN) secret gen-key > $(DATA_DIR)/dev-encryption-key)
	ENCRYPTION_KEY=$${ENCRYPTION_KEY:-$$(cat $(DATA_DIR)/dev-encryption-key)} \
		$(BIN) serve --dev --data-dir $(DATA_DIR) --pipelines-dir examples

crds: build
	@mkdir -p crds
	$(BIN) crds > crds/flotilla.yaml

lint: build
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(BIN) crds | diff -u crds/flotilla.yaml - || (echo "crds/ differs from 'flotilla crds': run 'make crds' and commit" >&2; exit 1)

bench: runner-image
	cargo build --release
	@bash scripts/bench-foundation.sh
	@bash scripts/bench-runs.sh
	@bash scripts/bench-schedules.sh
	@bash scripts/bench-api.sh
	@bash scripts/bench-parse.sh

# Coverage-guided fuzzing (cargo fuzz, nightly) of the parsers on their committed corpora
# (fuzz/corpus/), then schemathesis against a running operator: see scripts/fuzz.sh.
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh
