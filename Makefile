# The two commands of the README:
#   make demo   a job that misses and saves, then a job that hits, against a local versitygw
#   make test   the whole suite: lint, the release build, Go unit, integration and end-to-end
#               tests, bats tests of the hooks
# Both build the pinned test servers first (once per machine).
# And one a person runs to measure: make bench (scripts/bench; BENCH_ARGS="--small" or "node --runs 5").

export S3_CACHE_TOOLS_BIN ?= $(HOME)/.cache/s3-cache-tools
GO_TEST_FLAGS ?= -race -count=1 -timeout 30m

# Native Go fuzz targets, as package:Target. `make fuzz` runs each for FUZZTIME (10 minutes by
# default); `make test` runs each for 3,000 inputs (13 s for all three here; longer when new
# inputs need minimizing). A count, not a duration: Go 1.26's fuzz coordinator can fail a target with "context
# deadline exceeded" when a duration ends while a worker is busy (go.dev/issue/75804, fixed in
# Go 1.27), which failed a CI-style run here. Minimizing a new input is capped at 3 s: at the
# default 60 s, slow targets (extraction) spend the whole run minimizing.
FUZZ_TARGETS = ./pkg/archive:FuzzExtract ./pkg/config:FuzzLoad ./pkg/cachekey:FuzzManifestPatterns
FUZZTIME ?= 10m

.PHONY: all tools lint go-test bats test demo bench build snapshot fuzz fuzz-short

all: test

tools:
	scripts/build-tools

build:
	CGO_ENABLED=0 go build -trimpath -o dist/ ./cmd/...

lint: tools
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: the files above need formatting'; exit 1; }
	go vet ./...
	$(S3_CACHE_TOOLS_BIN)/staticcheck ./...
	shellcheck -x hooks/* lib/*.bash scripts/* .ci/run tests/*.bash

# The release build, offline, into dist/ (the release tests serve it to the hooks).
snapshot: tools
	$(S3_CACHE_TOOLS_BIN)/goreleaser release --snapshot --clean

# The chaos test's figures are printed after the run (go test hides a passing test's output).
go-test:
	@rm -f .chaos-figures.txt
	S3_CACHE_CHAOS_REPORT=$(CURDIR)/.chaos-figures.txt go test $(GO_TEST_FLAGS) ./...
	@cat .chaos-figures.txt 2>/dev/null || true; rm -f .chaos-figures.txt

bats:
	bats --timing tests/

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "--- fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
	  go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s "$${t%%:*}"; \
	done

fuzz-short:
	$(MAKE) fuzz FUZZTIME=3000x

test: tools lint snapshot go-test bats fuzz-short

demo: tools
	scripts/demo

# Not part of `make test`: s3-cache against the best shell pipeline on the corpora of issue 10.
bench: tools
	scripts/bench $(BENCH_ARGS)
