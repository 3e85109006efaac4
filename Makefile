# hull — see README.md. Targets: build, demo, test, bench, compare, kernel, kernel-tuned, clean.
GO      ?= go
BIN     := bin
BUILDFLAGS := -trimpath -buildvcs=false

.PHONY: build demo test fuzz bench compare kernel kernel-tuned deps lint clean

build:
	$(GO) build $(BUILDFLAGS) -o $(BIN)/hull ./cmd/hull
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags='-s -w' -o $(BIN)/hull-init ./cmd/hull-init

deps:
	./scripts/deps.sh

# Download the Debian cloud kernel package (once) and import it into
# the kernel store (once).
kernel: build
	@deb="$$(HULL=$(BIN)/hull ./scripts/kernel.sh)" && echo "$$deb" > $(BIN)/kernel-debian.deb && \
		basename "$$deb" | sed 's/^linux-image-/debian-/; s/_.*//' > $(BIN)/kernel-debian.name

# Build hull's tuned kernel (kernel/hull.config + kernel/patches on
# Debian's linux-source-6.1) into the kernel store, or reuse the stored
# one when source, fragment and patches are unchanged (instant).
kernel-tuned: build
	$(BIN)/hull kernel build
	@$(BIN)/hull kernel build -q > $(BIN)/kernel-tuned.digest
	@grep -qxE '[0-9a-f]{64}' $(BIN)/kernel-tuned.digest || { echo "kernel-tuned: no digest from hull kernel build -q" >&2; exit 1; }

demo: deps build kernel
	./scripts/demo.sh

lint:
	@test -z "$$(gofmt -l cmd internal test bench compare kernel)" || (gofmt -l cmd internal test bench compare kernel; exit 1)
	$(GO) vet ./...

# The whole suite on the tuned kernel, which becomes the default once it
# passes; then the VM tests once more on the Debian kernel, so hull keeps
# working on a distribution kernel too.
test: deps build kernel kernel-tuned lint
	HULL_KERNEL_DEB="$$(cat $(BIN)/kernel-debian.deb)" HULL_E2E_KERNEL="$$(cat $(BIN)/kernel-tuned.digest)" $(GO) test -count=1 -timeout 20m ./...
	$(BIN)/hull kernel default "$$(cat $(BIN)/kernel-tuned.digest)"
	HULL_E2E_KERNEL="$$(cat $(BIN)/kernel-debian.name)" $(GO) test -count=1 -timeout 20m ./test/e2e
	$(MAKE) fuzz

# Short fuzz runs of the parsers; the seed corpora live in testdata/fuzz.
# Minimising each new input is capped, or it eats the whole run.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=10s -fuzzminimizetime=100x ./internal/spec
	$(GO) test -run='^$$' -fuzz=FuzzResolve -fuzztime=10s -fuzzminimizetime=100x ./internal/elfdeps

# Numbers for both kernels, tuned first, in the same run.
bench: deps build kernel kernel-tuned
	$(GO) run ./bench -kernels "$$(cat $(BIN)/kernel-tuned.digest),$$(cat $(BIN)/kernel-debian.name)"

# hull against a traditional Debian server VM, side by side (docs/compare.md).
# Slow, so not part of make test. The first run builds the Debian root with
# debootstrap (root needed); later runs reuse it from .cache/compare. Both
# VMs boot Debian's kernel bundle, the kernel a Debian server runs (the
# tuned one cannot run its #! scripts). COMPARE_FLAGS passes flags through.
compare: deps build kernel
	@dpkg -s debootstrap >/dev/null 2>&1 || { s=; [ "$$(id -u)" -eq 0 ] || s=sudo; \
		echo "compare: installing debootstrap"; $$s apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive $$s apt-get install -y -q debootstrap >/dev/null; }
	$(GO) run ./compare -kernel "$$(cat $(BIN)/kernel-debian.name)" $(COMPARE_FLAGS)

clean:
	rm -rf $(BIN)
