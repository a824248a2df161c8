# logdist — see README.md. Every target works on a fresh machine with only Go.
GO      ?= go
BIN     := bin
PKGS    := ./...
# -race needs cgo; the race runtime is part of the Go distribution.
RACE    := -race
TESTFLAGS ?=
BENCHFLAGS ?=
FUZZTIME ?= 1m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# image and release: the version stamped into the binaries (--version),
# and the four commands they ship.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
STAMP   := -X github.com/logdist/logdist/internal/version.stamp=$(VERSION)
CMDS    := ./cmd/logdist ./cmd/analyzerd ./cmd/logsend ./cmd/logbench
DIST    := dist
IMAGE   ?= logdist:$(VERSION)
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
PODMAN  ?= podman
BUILDAH ?= buildah
# Tarballs get the commit's time and no owner, so that the same commit
# gives the same bytes (and checksums) wherever it is built.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: chaos soak durability image release all build test test-allocs deploy-check test-race test-short run bench bench-proxy bench-go fuzz fmt vet lint clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -buildvcs=auto -o $(BIN)/ ./cmd/...

## test: vet, then the whole suite (unit, property, end-to-end) under the race detector, then the allocation pins without it.
test: vet
	$(GO) test $(RACE) -count=1 -timeout 12m $(TESTFLAGS) $(PKGS)
	$(MAKE) --no-print-directory test-allocs
	$(MAKE) --no-print-directory deploy-check

## test-allocs: the AllocsPerRun pins of the per-packet paths, without -race (under it most skip: the race detector allocates).
test-allocs:
	$(GO) test -count=1 -run Alloc $$(grep -rl --include='*_test.go' AllocsPerRun . | xargs -n1 dirname | sort -u)

## deploy-check: the Kubernetes manifests and Helm chart (deploy/k8scheck, a module of its own: helm lint/template, strict decoding into k8s.io/api, yamllint). Builds helm v4 the first time (~3 min).
deploy-check:
	cd deploy/k8scheck && $(GO) vet ./... && $(GO) test -count=1 -timeout 20m ./...

test-race: test

## test-short: the same suite without the race detector (faster).
test-short:
	$(GO) test -short -count=1 $(PKGS)

fmt:
	gofmt -s -w $$(git ls-files '*.go')

vet:
	$(GO) vet $(PKGS)

lint: vet
	@out=$$(gofmt -s -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt -s would change:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) $(PKGS)

## run: build, start four analyzerd (0.4/0.3/0.2/0.1) and logdist, send a burst, print the distribution; Ctrl-C stops all.
run: build
	$(GO) build -o $(BIN)/ ./tools/localrun
	./$(BIN)/localrun --bin $(BIN)

## bench: logdist side by side with a direct connection and HAProxy (tools/benchcmp; installs haproxy as root if missing).
bench: build
	$(GO) build -o $(BIN)/ ./tools/benchcmp
	./$(BIN)/benchcmp --bin $(BIN) $(BENCHFLAGS)

## bench-proxy: the proxy's own cost: copyproxy (the floor), logdist --loops 1 and HAProxy nbthread 1, each alone on one CPU (taskset), logbench and framesink on the other; CPU and system calls per packet (benchcmp --isolated; perf from linux-perf for the system calls).
bench-proxy: build
	$(GO) build -o $(BIN)/ ./tools/benchcmp ./tools/framesink ./tools/copyproxy
	./$(BIN)/benchcmp --bin $(BIN) --isolated $(BENCHFLAGS)

## bench-go: Go micro-benchmarks of the hot paths.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./frame/... ./balancer/... ./proxy/...

## chaos: every fault scenario (real processes, Toxiproxy in-process) and its table in docs/chaos-table.md (make test runs a short subset).
chaos:
	LOGDIST_CHAOS=full LOGDIST_CHAOS_OUT=$(CURDIR)/docs/chaos-table.md $(GO) test -count=1 -timeout 20m -run 'TestChaos$$' -v ./internal/e2e/

## durability: the spool's end-to-end tests at full length: kill -9 under load five times, and every analyzer down for 60 s at 2,000 packets/s (make test runs a 5 s outage).
durability:
	LOGDIST_OUTAGE=60s $(GO) test -count=1 -timeout 20m -run 'TestSpool' -v ./internal/e2e/

## soak: 30 minutes at 2,000 packets/s with analyzers killed and restarted; RSS, open files and goroutines drawn in docs/soak.png (make test runs 20 s of it).
soak:
	LOGDIST_SOAK=30m LOGDIST_SOAK_PNG=$(CURDIR)/docs/soak.png $(GO) test -count=1 -timeout 45m -run 'TestSoak$$' -v ./internal/e2e/

## fuzz: every fuzz target for FUZZTIME each (default 1m). Minimizing a new
## input may take 3 s, not Go's default minute, during which the other
## workers wait: with the default a run spent most of its time stalled.
fuzz:
	@set -e; for t in frame:FuzzParseHeader frame:FuzzDecodePacket frame:FuzzDecodeData frame:FuzzReader frame:FuzzControl \
		internal/syslog:FuzzParse internal/syslog/oracle:FuzzOracle proxy:FuzzNextSyslogFrame \
		internal/redact:FuzzRedact internal/agentauth:FuzzHandshakeWithAuth internal/spool:FuzzOpenSegment; do \
		echo "== $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s ./$${t%%:*}/; \
	done

## image: static binaries (CGO_ENABLED=0) in bin/linux-amd64/, then the Dockerfile's image with podman or buildah.
image:
	@test -r $(CA_BUNDLE) || { echo "make image: no CA bundle at $(CA_BUNDLE) (set CA_BUNDLE=...)"; exit 1; }
	@rm -rf $(BIN)/linux-amd64 && mkdir -p $(BIN)/linux-amd64/data
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -buildvcs=auto -trimpath -ldflags "$(STAMP)" -o $(BIN)/linux-amd64/ $(CMDS)
	cp $(CA_BUNDLE) $(BIN)/linux-amd64/ca-certificates.crt
	@# The context is the binaries' directory alone (BIN=.), not the whole tree.
	@# --format docker: the OCI format has no HEALTHCHECK.
	@if command -v $(PODMAN) >/dev/null; then set -x; \
		$(PODMAN) build --format docker -f Dockerfile --build-arg BIN=. -t $(IMAGE) -t logdist:latest $(BIN)/linux-amd64; \
	elif command -v $(BUILDAH) >/dev/null; then set -x; \
		$(BUILDAH) bud --format docker -f Dockerfile --build-arg BIN=. -t $(IMAGE) -t logdist:latest $(BIN)/linux-amd64; \
	else \
		echo "no image builder is installed (podman or buildah; on Debian: apt-get install podman)."; \
		echo "The static binaries are in $(BIN)/linux-amd64/; with Docker: docker build -f Dockerfile --build-arg BIN=. -t $(IMAGE) $(BIN)/linux-amd64"; \
	fi

## release: static binaries for linux/amd64 and linux/arm64 in dist/logdist_VERSION_linux_ARCH.tar.gz, and dist/SHA256SUMS.
release:
	@test -r LICENSE || { echo "make release: LICENSE is missing"; exit 1; }
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for arch in amd64 arm64; do \
		name=logdist_$(VERSION)_linux_$$arch; dir=$(DIST)/$$name; \
		echo "== $$name.tar.gz"; \
		mkdir -p $$dir/deploy; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -buildvcs=auto -trimpath -ldflags "$(STAMP)" -o $$dir/ $(CMDS); \
		cp LICENSE README.md CHANGELOG.md $$dir/; \
		cp -R deploy/systemd $$dir/deploy/; \
		tar -C $(DIST) --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner -cf - $$name | gzip -n -9 > $$dir.tar.gz; \
		rm -rf $$dir; \
	done
	cd $(DIST) && sha256sum *.tar.gz > SHA256SUMS
	@cat $(DIST)/SHA256SUMS
	@# The host's logdist, out of its tarball, must say the stamped version.
	@set -e; tgz=$(DIST)/logdist_$(VERSION)_$$($(GO) env GOOS)_$$($(GO) env GOARCH).tar.gz; \
	if [ -f $$tgz ]; then \
		tmp=$$(mktemp -d); tar -C $$tmp -xzf $$tgz; \
		v=$$($$tmp/*/logdist --version); rm -rf $$tmp; echo "$$v"; \
		case "$$v" in "logdist $(VERSION) "*) ;; *) echo "make release: --version does not say $(VERSION)"; exit 1;; esac; \
	fi

clean:
	rm -rf $(BIN) $(DIST)
