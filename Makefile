# millrace: the whole set-up is `make demo` and `make test` (see README.md).
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

GO ?= go
STATICCHECK_VERSION ?= v0.8.2
# Every Go module in the repository: the core, bench/, and the container
# starter of the tests (internal/testdb/containerpg, a module of its own so
# that testcontainers-go stays out of the core's module graph), the SQLite
# driver (driver/sqlite) and the command line (cmd/millrace, which runs the
# demo on either driver), modules of their own so that modernc.org/sqlite
# and cobra stay out of it too.
MODULES := $(patsubst %/,%,$(dir $(wildcard go.mod */go.mod driver/*/go.mod cmd/*/go.mod internal/*/*/go.mod)))
ENSURE_PG := bash scripts/ensure-postgres.sh

.PHONY: all test test-faults soak soak-faults fuzz demo demo-sqlite bench bench-pinned lint db-up db-down ensure-postgres

all: test

# ensure-postgres makes sure a server answers (starting or installing one on
# a Debian machine when needed) and that pg_dump and psql are present.
ensure-postgres:
	@$(ENSURE_PG)

## test: go vet and the race-enabled tests of every module, on a real Postgres
## (with the fault suite at reduced sizes), then short fuzz runs
test: ensure-postgres
	@set -e; for m in $(MODULES); do \
		echo "== $$m: go vet"; (cd $$m && $(GO) vet ./...); \
		echo "== $$m: go test -race"; (cd $$m && $(GO) test -race -count=1 -timeout 20m ./...); \
	done
	@$(MAKE) --no-print-directory fuzz FUZZTIME=30000x

## test-faults: the fault suite at full sizes (20,000 jobs, 500 workers per
## scenario; prints its summary table), then the fuzz tests
test-faults: ensure-postgres
	cd faults && MILLRACE_FAULTS=full $(GO) test -race -count=1 -timeout 60m
	@$(MAKE) --no-print-directory fuzz

## soak: one millrace client working a steady stream (RATE jobs/s, default
## 2000, inserted by a second client) for DURATION (default 10m), its RSS,
## heap and goroutines sampled every 10 s, then compared start to end
## (bench/ scenario soak; see bench/README.md)
DURATION ?= 10m
RATE ?= 2000
SIZES ?= full
soak:
	@set -eo pipefail; url="$${DATABASE_URL:-}"; \
	if [ -z "$$url" ]; then url=$$($(ENSURE_PG) | tee /dev/stderr | sed -n 's/^ensure-postgres: ready: //p' | tail -n1); \
	else $(ENSURE_PG) >&2; fi; \
	set -e; \
	cd bench && DATABASE_URL="$$url" BENCH_SCENARIOS=soak BENCH_SOAK_DURATION=$(DURATION) BENCH_SOAK_RATE=$(RATE) \
		BENCH_OUT=out/soak.json $(GO) run ./cmd/bench

## soak-faults: scenarios 1, 4 and 6 of the fault suite in a loop for
## DURATION (default 10m), at SIZES (full or reduced; default full)
soak-faults: ensure-postgres
	cd faults && MILLRACE_FAULTS=$(SIZES) MILLRACE_FAULTS_SOAK=$(DURATION) $(GO) test -race -count=1 -timeout 0 -run '^TestFaults$$'

## fuzz: each fuzz test for FUZZTIME runs (default 200000x) on top of its
## committed seeds. A count rather than a duration: Go 1.26's fuzz
## coordinator can fail a duration-bound run with a spurious "context
## deadline exceeded" as the time runs out (golang/go#75804).
FUZZTIME ?= 200000x
FUZZ_TARGETS := ./internal/uniquekey:FuzzKey ./client:FuzzArgsDecode ./faults:FuzzParseCron ./faults:FuzzPeriodicInterval ./driver/internal/pgexec:FuzzBinaryArray
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $${t#*:} ($${t%%:*}) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

## demo: migrate a demo schema, insert and work jobs, with progress output;
## on SQLite (no server) when DATABASE_URL is unset and no PostgreSQL is
## reachable or can be installed
demo:
	@set -eo pipefail; url="$${DATABASE_URL:-}"; \
	if [ -z "$$url" ]; then \
		if ! url=$$($(ENSURE_PG) | tee /dev/stderr | sed -n 's/^ensure-postgres: ready: //p' | tail -n1) || [ -z "$$url" ]; then \
			echo "demo: no PostgreSQL is reachable and none could be installed: running the demo on SQLite instead (a file, no server)" >&2; \
			$(MAKE) --no-print-directory demo-sqlite; exit 0; \
		fi; \
	else $(ENSURE_PG) >&2; fi; \
	cd cmd/millrace && DATABASE_URL="$$url" $(GO) run . demo

## demo-sqlite: the demo on SQLite, in a temporary file, with no server
demo-sqlite:
	cd cmd/millrace && DATABASE_URL= $(GO) run . demo --driver sqlite

## bench: the core's Go benchmarks (briefly), then millrace side by side with River (bench/, ~13 min; see bench/README.md;
## BENCH_SCENARIOS=scale, the cost-as-work-grows curve, runs only when named)
bench:
	@set -eo pipefail; url="$${DATABASE_URL:-}"; \
	if [ -z "$$url" ]; then url=$$($(ENSURE_PG) | tee /dev/stderr | sed -n 's/^ensure-postgres: ready: //p' | tail -n1); \
	else $(ENSURE_PG) >&2; fi; \
	set -e; \
	echo "== core benchmarks (5000 jobs each)"; \
	$(GO) test -run '^$$' -bench . -skip '^BenchmarkFairFetch' -benchmem -benchtime 5000x ./...; \
	echo "== the fair fetch on 200,000-job queues (20 fetches each: one takes milliseconds)"; \
	$(GO) test -run '^$$' -bench '^BenchmarkFairFetch' -benchmem -benchtime 20x ./internal/producer; \
	echo "== the SQLite driver's burn-down (5000 jobs; compare with client's BenchmarkBurndown on Postgres above)"; \
	(cd driver/sqlite && $(GO) test -run '^$$' -bench . -benchmem -benchtime 5000x .); \
	echo "== millrace vs River v0.51.2 (bench/cmd/bench)"; \
	cd bench && DATABASE_URL="$$url" $(GO) run ./cmd/bench

## bench-pinned: bench/cmd/bench against a private Postgres on CPU 0, the bench on the other CPUs (the server's
## CPU per job bounds throughput there, as when the database is the busy machine; scripts/bench-pinned.sh,
## bench/README.md "When the server has a core of its own"; BENCH_* as for bench)
bench-pinned:
	@bash scripts/bench-pinned.sh

## lint: gofmt, go vet and staticcheck on every module
lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done
	@if $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) 2>/dev/null; then \
		for m in $(MODULES); do (cd $$m && staticcheck ./...) || exit 1; done; \
	else echo "staticcheck could not be installed from the module proxy; skipped it"; fi

## db-up / db-down: Postgres in a container, for those with Docker
db-up:
	docker compose up -d --wait postgres

db-down:
	docker compose down
