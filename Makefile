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

.PHONY: chaos soak all build test test-race test-short run bench bench-go fuzz fmt vet lint clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -buildvcs=auto -o $(BIN)/ ./cmd/...

## test: vet, then the whole suite (unit, property, end-to-end) under the race detector.
test: vet
	$(GO) test $(RACE) -count=1 -timeout 12m $(TESTFLAGS) $(PKGS)

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

## bench-go: Go micro-benchmarks of the hot paths.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./frame/... ./balancer/... ./proxy/...

## chaos: every fault scenario (real processes, Toxiproxy in-process) and its table in docs/chaos-table.md (make test runs a short subset).
chaos:
	LOGDIST_CHAOS=full LOGDIST_CHAOS_OUT=$(CURDIR)/docs/chaos-table.md $(GO) test -count=1 -timeout 20m -run 'TestChaos$$' -v ./internal/e2e/

## soak: 30 minutes at 2,000 packets/s with analyzers killed and restarted; RSS, open files and goroutines drawn in docs/soak.png (make test runs 20 s of it).
soak:
	LOGDIST_SOAK=30m LOGDIST_SOAK_PNG=$(CURDIR)/docs/soak.png $(GO) test -count=1 -timeout 45m -run 'TestSoak$$' -v ./internal/e2e/

## fuzz: every fuzz target for FUZZTIME each (default 1m). Minimizing a new
## input may take 3 s, not Go's default minute, during which the other
## workers wait: with the default a run spent most of its time stalled.
fuzz:
	@set -e; for t in frame:FuzzParseHeader frame:FuzzDecodePacket frame:FuzzDecodeData frame:FuzzReader frame:FuzzControl \
		internal/syslog:FuzzParse internal/syslog/oracle:FuzzOracle proxy:FuzzNextSyslogFrame \
		internal/redact:FuzzRedact internal/agentauth:FuzzHandshakeWithAuth; do \
		echo "== $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s ./$${t%%:*}/; \
	done

clean:
	rm -rf $(BIN)
