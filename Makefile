# The two commands of the README:
#   make demo   a job that misses and saves, then a job that hits, against a local versitygw
#   make test   the whole suite: lint, the release build, Go unit, integration and end-to-end
#               tests, bats tests of the hooks
# Both build the pinned test servers first (once per machine).

export S3_CACHE_TOOLS_BIN ?= $(HOME)/.cache/s3-cache-tools
GO_TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: all tools lint go-test bats test demo build snapshot

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

go-test:
	go test $(GO_TEST_FLAGS) ./...

bats:
	bats --timing tests/

test: tools lint snapshot go-test bats

demo: tools
	scripts/demo
