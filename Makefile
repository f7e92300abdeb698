# piivault: the two-command Quick start is `make demo` and `make test`. Both install what is missing first.
# `make test-unit` runs the tests that need no service (no PostgreSQL, no SQS emulator, no Python).
SHELL := /bin/bash
# The Python test tools' venv, where scripts/install-deps puts them when the system's Python is externally managed
# (Debian's): first on PATH for every recipe (a folder that does not exist is skipped).
export PATH := $(CURDIR)/.local/venv/bin:$(PATH)
SWIFT ?= swift
# `make bench MESSAGES=1000000 DISTINCT="1.0 0.1"` (BENCH_MESSAGES / BENCH_DISTINCT also work).
BENCH_MESSAGES ?= 200000
BENCH_DISTINCT ?= 1.0 0.1
MESSAGES ?= $(BENCH_MESSAGES)
DISTINCT ?= $(BENCH_DISTINCT)
# `make bench-compliance COMPLIANCE_ROWS=1000000`: lookup, forget and retention on that many loaded logins.
COMPLIANCE_ROWS ?= 1000000
# `make bench-retokenize RETOKENIZE_ROWS=1000000 RETOKENIZE_DISTINCT=0.1` (issue 13, acceptance 5).
RETOKENIZE_ROWS ?= 1000000
RETOKENIZE_DISTINCT ?= 0.1
# `make bench-sqs SQS_MESSAGES=20000` (on a throwaway LocalStack; PIIVAULT_BENCH_SQS=moto: moto_server; see scripts/bench-sqs).
SQS_MESSAGES ?= 20000
# `make bench-scale SCALE_MESSAGES=20000 SCALE_PROCESSES=4 SCALE_DELAY_MS=2 SCALE_ROUNDS=1` (as root; see scripts/bench-scale).
SCALE_MESSAGES ?= 20000
SCALE_PROCESSES ?= 4
SCALE_DELAY_MS ?= 2
SCALE_ROUNDS ?= 1
# `make bench-rewrap DATA_KEYS=1000` (see scripts/bench-rewrap).
DATA_KEYS ?= 1000
# `make install PREFIX=/opt/piivault`: the binary in $(PREFIX)/bin, the migrations in $(PREFIX)/share/piivault/migrations,
# where `piivault migrate` looks beside its bin folder. CONFIGURATION=debug installs the debug build (tests).
PREFIX ?= /usr/local
CONFIGURATION ?= release
INSTALL_FLAGS = $(if $(filter release,$(CONFIGURATION)),$(RELEASE_FLAGS),-c $(CONFIGURATION))

.PHONY: all deps deps-build build release install test test-unit lint-deploy fuzz demo bench bench-seed bench-instructions bench-compliance bench-retokenize bench-sqs bench-scale bench-rewrap services services-stop services-status clean

all: build

deps:
	@scripts/install-deps

# Only what compiling needs (libsodium, libpq headers): no PostgreSQL server, no Python packages.
deps-build:
	@scripts/install-deps --build

build: deps
	$(SWIFT) build

# Release builds link the Swift runtime and Foundation into the binary, as the Docker image does: it runs on a Linux
# with only libpq and libsodium, and starts in half the CPU time (20 ms instead of 40; the tests start it 600 times).
RELEASE_FLAGS := -c release --static-swift-stdlib

# The products only (the command and the benchmarks), one at a time: a plain `swift build -c release` builds every
# target, the test helpers too, and TestSupport imports XCTest, which a static release build cannot link. `make test`
# builds through this target, so a broken `make release` fails the test run.
RELEASE_PRODUCTS := piivault piivault-bench
release: deps
	@set -e; for product in $(RELEASE_PRODUCTS); do \
		echo "$(SWIFT) build $(RELEASE_FLAGS) --product $$product"; $(SWIFT) build $(RELEASE_FLAGS) --product $$product; done

install: deps-build
	$(SWIFT) build $(INSTALL_FLAGS) --product piivault
	scripts/install-piivault "$$($(SWIFT) build $(INSTALL_FLAGS) --show-bin-path)" "$(PREFIX)"

# The unit tier: test targets that need no service. Listed here; every other test target is the integration tier.
UNIT_TEST_TARGETS := SigV4Tests AWSTests PIIVaultTests CommandParsingTests
empty :=
space := $(empty) $(empty)
test-unit: deps-build
	$(SWIFT) build
	PIIVAULT_REQUIRE_SERVICES=1 $(SWIFT) test --disable-swift-testing --filter '^($(subst $(space),|,$(UNIT_TEST_TARGETS)))\.'

# Builds, starts throwaway Postgres and moto_server on loopback, runs every test (none may skip), stops them.
# Tests run TEST_WORKERS at a time, each in a process of its own (most of a test's time is spent waiting on the
# binary, the database or the emulator); `make test TEST_WORKERS=1` runs them one after another. A crash of the
# binary under test prints its full backtrace. The suite's time is printed at the end (`real`); per-test times land in
# .build/test-results.xml.
# The CLI tests run the release binary (what users run, and a third of the CPU of the debug one); the test code
# itself is the debug build. The tests are built in the environment they run in: SwiftPM evaluates every package
# manifest again (10 s) whenever the environment differs from the last build's, and does it once more for the first
# `swift test` after a build, so an empty test run goes first and the timed run times only the tests. Connections to
# the loopback cluster skip TLS (PGSSLMODE; a third of a connection's CPU) unless a test asks for it: the TLS tests
# name sslmode=verify-full in their URLs. They skip GSSAPI encryption too (PGGSSENCMODE): libpq would initialise
# Kerberos for every connection, and a test process that exits while a connection closes on another thread can
# abort in Kerberos' thread-specific data (once in CI: krb5int_getspecific's assertion, after the test had passed).
TEST_WORKERS ?= 6
# The last line is the count from the xunit results (scripts/test-summary): `N passed, N failed, N skipped`; the
# target fails when a test failed or the results are missing.
TEST_RESULTS := .build/test-results.xml
test: build release lint-deploy
	@rm -f $(TEST_RESULTS)
	PIIVAULT_TEST_BINARY="$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/piivault" \
	PIIVAULT_REQUIRE_SERVICES=1 SWIFT_BACKTRACE=preset=full PGSSLMODE=disable PGGSSENCMODE=disable \
	scripts/with-services bash -c '$(SWIFT) build --build-tests \
		&& $(SWIFT) test --skip-build --disable-swift-testing --parallel --skip ".*" >/dev/null 2>&1 \
		&& time $(SWIFT) test --skip-build \
		--disable-swift-testing --parallel --num-workers $(TEST_WORKERS) --xunit-output $(TEST_RESULTS)'; \
	status=$$?; scripts/test-summary $(TEST_RESULTS) || status=1; exit $$status

# The deployment files: the Dockerfile passes hadolint (settings in .hadolint.yaml), the Kubernetes manifests pass
# kubernetes-validate (offline, bundled schemas); the target fails when either does not.
lint-deploy: deps
	hadolint Dockerfile
	kubernetes-validate deploy/kubernetes/*.yaml

# Fuzzing (not part of `make test`): every parser of outside bytes under libFuzzer and AddressSanitizer, FUZZ_SECONDS
# each, FUZZ_JOBS at a time, after a self-test that a crash, a leak and a hang are caught (see scripts/fuzz, Fuzz/);
# FUZZ_HARNESSES="xml sigv4" runs only those, in that order (default: every harness).
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 2
fuzz: deps-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) SWIFT=$(SWIFT) scripts/fuzz $(FUZZ_HARNESSES)

# The main job end to end on local defaults, with the release build (what `make test` and `make install` use).
demo: release
	PIIVAULT="$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/piivault" scripts/with-services scripts/demo

# Benchmarks (measurements, not tests): every distinct share in DISTINCT, then a summary table.
bench: release
	PIIVAULT_PG_DURABLE=1 scripts/with-services scripts/bench "$(MESSAGES)" $(DISTINCT)
	PIIVAULT_PG_DURABLE=1 scripts/with-services scripts/bench-unmask

# piivault against the seed's design (SHA-256, one INSERT per row, no index) on the same files: both rates, their ratio.
bench-seed: release
	PIIVAULT_PG_DURABLE=1 scripts/with-services scripts/bench-seed "$(MESSAGES)" $(DISTINCT)

# `make bench-instructions [INSTRUCTIONS_MESSAGES=20000]`: the ETL process's instructions per message under callgrind
# (see scripts/bench-instructions); BASELINE_BIN=/old/piivault BASELINE_MIGRATIONS=/old/migrations adds another build's.
INSTRUCTIONS_MESSAGES ?= 20000
bench-instructions: release
	scripts/with-services scripts/bench-instructions "$(INSTRUCTIONS_MESSAGES)" 1.0 0.1

# The data-subject requests on COMPLIANCE_ROWS logins: lookup and forget database time, retention rate.
bench-compliance: release
	PIIVAULT_PG_DURABLE=1 scripts/with-services scripts/bench-compliance "$(COMPLIANCE_ROWS)"

# retokenize of RETOKENIZE_ROWS logins (RETOKENIZE_DISTINCT of them distinct values) from token key v1 to v2.
bench-retokenize: release
	PIIVAULT_PG_DURABLE=1 scripts/with-services scripts/bench-retokenize "$(RETOKENIZE_ROWS)" "$(RETOKENIZE_DISTINCT)"

# The SQS end-to-end comparison on a throwaway LocalStack started on loopback without Docker (installed into
# .local/localstack-venv by `scripts/install-deps --bench`; `make test` does not need it): the bare loop's rate, the
# ETL's, their ratio, and 4 ETL processes on one queue loading every message once (see scripts/bench-sqs).
bench-sqs: release
	scripts/install-deps --bench
	PIIVAULT_PG_DURABLE=1 scripts/with-services scripts/bench-sqs "$(SQS_MESSAGES)"

# Scale-out across hosts on one machine (as root): PostgreSQL, LocalStack and SCALE_PROCESSES `piivault etl` processes
# each in a network namespace of its own, the database SCALE_DELAY_MS each way away (a user-space delaying link: this
# kernel has no netem); the single process's rate with the delay and without, the processes' combined rate, and a
# check that every message id is loaded once (see scripts/bench-scale). It starts its own services: no with-services.
bench-scale: release
	scripts/install-deps --bench
	scripts/bench-scale "$(SCALE_MESSAGES)" "$(SCALE_PROCESSES)" "$(SCALE_DELAY_MS)" "$(SCALE_ROUNDS)"

# `piivault rewrap` of DATA_KEYS data keys (issue 13's benchmark: 1,000).
bench-rewrap: release
	PIIVAULT_PG_DURABLE=1 scripts/with-services scripts/bench-rewrap "$(DATA_KEYS)"

# Long-lived local services for development (`swift test` then finds them through .local/services.env).
services: deps
	scripts/services start

services-stop:
	scripts/services stop

services-status:
	scripts/services status

clean:
	-scripts/services stop
	rm -rf .build .local
