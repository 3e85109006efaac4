# hull — see README.md. Targets: build, demo, test, bench, kernel, clean.
GO      ?= go
BIN     := bin
BUILDFLAGS := -trimpath -buildvcs=false

.PHONY: build demo test test-unit test-e2e fuzz bench kernel deps lint clean

build:
	$(GO) build $(BUILDFLAGS) -o $(BIN)/hull ./cmd/hull
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags='-s -w' -o $(BIN)/hull-init ./cmd/hull-init

deps:
	./scripts/deps.sh

# Download the Debian cloud kernel package (once) and import it into
# the kernel store (once).
kernel: build
	@HULL=$(BIN)/hull ./scripts/kernel.sh >/dev/null

demo: deps build kernel
	./scripts/demo.sh

lint:
	@test -z "$$(gofmt -l cmd internal test bench)" || (gofmt -l cmd internal test bench; exit 1)
	$(GO) vet ./...

test: deps build kernel lint
	HULL_KERNEL_DEB="$$(HULL=$(BIN)/hull ./scripts/kernel.sh)" $(GO) test -count=1 -timeout 20m ./...
	$(MAKE) fuzz

# Short fuzz runs of the parsers; the seed corpora live in testdata/fuzz.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=10s ./internal/spec
	$(GO) test -run='^$$' -fuzz=FuzzResolve -fuzztime=10s ./internal/elfdeps

bench: deps build kernel
	$(GO) run ./bench

clean:
	rm -rf $(BIN)
