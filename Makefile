# gallium-net. `make demo` and `make test` set up everything they need
# (Debian packages, Go modules) as root on Debian 12; see README.md.
GO      ?= go
BIN     := bin
# One version for the binaries and the packages (packaging/build's scheme:
# 0.1.0~git<commit time>.<sha>[.dirty] before the first tag). Lazy (=), so
# that it is computed after `deps` has fetched the Go modules.
VERSION  = $(shell $(GO) run ./packaging/build -print-version 2>/dev/null || git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
LDFLAGS  = -X main.version=$(VERSION)
export GOFLAGS := -buildvcs=false

.PHONY: all deps build test test-unit test-lab test-e2e test-pkg test-cluster demo fuzz bench packages clean

all: build

deps:
	@bash test/setup/deps.sh

build: deps
	@mkdir -p $(BIN)
	$(GO) build -buildmode=pie -ldflags '$(LDFLAGS)' -o $(BIN)/gallium-net ./cli
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS) -s -w' -o $(BIN)/gallium-net-hook ./hooks

# Every tier; GALLIUM_STRICT=1 turns "cannot run here" into a failure.
test: build
	@bash test/run-tiers.sh

test-unit: build
	@bash test/run-tiers.sh unit

test-lab: build
	@bash test/run-tiers.sh lab

test-e2e: build
	@bash test/run-tiers.sh e2e

test-pkg: build
	@bash test/run-tiers.sh pkg

test-cluster: build
	@bash test/run-tiers.sh cluster

# dist/*.deb and dist/*.rpm, versioned from git (packaging/README.md).
packages: build
	$(GO) run ./packaging/build -bin $(BIN) -out dist

demo: build
	@bash test/demo.sh

fuzz: deps
	@bash test/fuzz.sh

bench: deps
	@bash test/bench.sh

clean:
	rm -rf $(BIN) dist
