# The documented ways to build, test, run and measure Flotilla.
#
#   make run      operator on the embedded SQLite, reconciling examples/, dashboard URL printed
#   make test     every test, then the run and schedule tiers again on PostgreSQL (installs
#                 what it needs: haproxy, postgresql, the runner image)
#   make test-postgres   only the run and schedule tiers, on PostgreSQL
#   make bench    benchmarks; print figures
#   make lint     cargo fmt --check, clippy -D warnings, CRD drift check
#   make crds     regenerate crds/ from the binary
#   make fuzz     every fuzz target for FUZZ_SECONDS (default 600) each, then schemathesis

export CARGO_TARGET_DIR ?= $(HOME)/.cache/flotilla-target
BIN := $(CARGO_TARGET_DIR)/debug/flotilla
DATA_DIR ?= ./data

include mk/infra.mk

.PHONY: build test test-postgres run crds lint bench deps fuzz

build:
	cargo build --all-targets

# Installs the system packages the tests use (needs root; no-op when present).
deps:
	@bash scripts/install-deps.sh

# The PostgreSQL pass runs even when the first one failed (make fails if either did).
# One build serves both: the store is picked at run time (FLOTILLA_TEST_STORE).
test: deps runner-image
	@command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
	cargo build --all-targets
	@failed=0; \
	echo "cargo nextest run --no-fail-fast"; \
	cargo nextest run --no-fail-fast || failed=1; \
	echo "$(TEST_POSTGRES)"; \
	$(TEST_POSTGRES) || failed=1; \
	exit $$failed

# The run and schedule tiers with every test operator on a PostgreSQL database of its
# test's own (tests/support/store.rs).
TEST_POSTGRES := FLOTILLA_TEST_STORE=postgres cargo nextest run --no-fail-fast --test runs --test schedules --test fastflow_import --test triggers
test-postgres:
	$(TEST_POSTGRES)

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
	@bash scripts/bench-git.sh
	@bash scripts/bench-runs.sh
	@bash scripts/bench-chain.sh
	@bash scripts/bench-notify.sh
	@bash scripts/bench-schedules.sh
	@bash scripts/bench-api.sh
	@bash scripts/bench-output.sh
	@bash scripts/bench-ha.sh
	@bash scripts/bench-parse.sh

# Coverage-guided fuzzing (cargo fuzz, nightly) of the parsers on their committed corpora
# (fuzz/corpus/), then schemathesis against a running operator: see scripts/fuzz.sh.
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh
