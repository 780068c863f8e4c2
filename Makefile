# millrace: the whole set-up is `make demo` and `make test` (see README.md).
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

GO ?= go
STATICCHECK_VERSION ?= v0.8.2
# Every Go module in the repository (the core, and bench/ once it exists).
MODULES := $(patsubst %/,%,$(dir $(wildcard go.mod */go.mod)))
ENSURE_PG := bash scripts/ensure-postgres.sh

.PHONY: all test demo bench lint db-up db-down ensure-postgres

all: test

# ensure-postgres makes sure a server answers (starting or installing one on
# a Debian machine when needed) and that pg_dump and psql are present.
ensure-postgres:
	@$(ENSURE_PG)

## test: go vet and the race-enabled tests of every module, on a real Postgres
test: ensure-postgres
	@set -e; for m in $(MODULES); do \
		echo "== $$m: go vet"; (cd $$m && $(GO) vet ./...); \
		echo "== $$m: go test -race"; (cd $$m && $(GO) test -race -timeout 20m ./...); \
	done

## demo: migrate a demo schema, insert and work jobs, with progress output
demo:
	@url="$${DATABASE_URL:-}"; \
	if [ -z "$$url" ]; then url=$$($(ENSURE_PG) | tee /dev/stderr | sed -n 's/^ensure-postgres: ready: //p' | tail -n1); \
	else $(ENSURE_PG) >&2; fi; \
	DATABASE_URL="$$url" $(GO) run ./cmd/millrace demo

## bench: the core's Go benchmarks (briefly), then millrace side by side with River (bench/, ~11 min; see bench/README.md)
bench:
	@url="$${DATABASE_URL:-}"; \
	if [ -z "$$url" ]; then url=$$($(ENSURE_PG) | tee /dev/stderr | sed -n 's/^ensure-postgres: ready: //p' | tail -n1); \
	else $(ENSURE_PG) >&2; fi; \
	set -e; \
	echo "== core benchmarks (5000 jobs each)"; \
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 5000x ./...; \
	echo "== millrace vs River v0.51.2 (bench/cmd/bench)"; \
	cd bench && DATABASE_URL="$$url" $(GO) run ./cmd/bench

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
