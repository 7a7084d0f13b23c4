# ustack: build, test, fuzz, demo. `make help` lists the targets.

# go from PATH, else where the official tarball puts it (sudo resets PATH).
GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
BIN      := bin/ustack
# Every integration test makes its own network namespace; they need root and
# skip (saying why) without it.
TESTFLAGS ?= -race -count=1 -timeout 15m
# The short runs are bounded by executions, not time: with a duration, Go's
# coordinator can fail a clean run with "context deadline exceeded" when a
# busy machine starves a worker at the deadline (go.dev/issue/75804).
FUZZ_INPUT_SHORT ?= 200000x
FUZZ_PARSE_SHORT ?= 1000000x
FUZZTIME_LONG    ?= 5m

# scripts/deps.sh SET installs what a target uses when it is missing (as
# root with apt-get), or says what is missing and how to install it.
DEPS     := ./scripts/deps.sh

.PHONY: all build test check vet fmt-check unit fuzz-short fuzz demo bench help clean

all: build

help:
	@echo "make build   build $(BIN)"
	@echo "make test    installs what the tests use, then make check (root, for the integration tests)"
	@echo "make check   gofmt check, go vet, every test with -race, short fuzz runs: make test without installing"
	@echo "make fuzz    fuzz the stack's input and the header parsers, $(FUZZTIME_LONG) each"
	@echo "make demo    run ustack in a throwaway network namespace and point curl, nc and ping at it (root; installs them)"
	@echo "make bench   ustack vs gVisor vs the kernel: throughput, latency, connections, HTTP, memory (root, under 10 min; BENCHFLAGS=-quick)"
	@echo "make clean   remove $(BIN)"

build:
	$(GO) build -o $(BIN) ./cmd/ustack

fmt-check:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test $(TESTFLAGS) ./...

fuzz-short:
	$(GO) test -run='^$$' -fuzz=FuzzInput -fuzztime=$(FUZZ_INPUT_SHORT) ./stack/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZ_PARSE_SHORT) ./stack/header/

# The tools first, so that nothing half-runs without them.
test:
	@$(DEPS) test
	@$(MAKE) --no-print-directory check

check: vet unit fuzz-short fmt-check

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzInput -fuzztime=$(FUZZTIME_LONG) ./stack/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME_LONG) ./stack/header/

# Prints one table and writes bench-results.json; BENCHFLAGS=-quick for a
# one-minute run, BENCHFLAGS="-profile prof" for CPU profiles of the daemons.
BENCHFLAGS ?=
# wrk drives the HTTP rows.
bench:
	@$(DEPS) bench
	$(GO) run ./integration/bench $(BENCHFLAGS)

demo:
	@$(DEPS) demo
	@$(MAKE) --no-print-directory build
	./scripts/demo.sh $(BIN)

clean:
	rm -rf bin
