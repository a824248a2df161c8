// Package analyzerd is logdist's reference analyzer, built on frame/server:
// it receives packets, counts them, detects duplicates by (agent id, packet
// id) in bounded memory, optionally writes every message as a JSON line,
// and serves its counters over HTTP. It acknowledges a packet only once it
// is processed (written and flushed when writing is on), so its ACKs mean
// what at-least-once delivery needs. cmd/analyzerd is its command.
package analyzerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/internal/logthrottle"
	"github.com/logdist/logdist/internal/promexp"
	"github.com/logdist/logdist/internal/tracing"
)

// Config configures an Analyzer. Start from DefaultConfig.
type Config struct {
	// Name identifies this analyzer in /stats, logs and the WELCOME's
	// server id.
	Name string

	// Tracer, if set, records a span for every packet that arrives with
	// a sampled trace context.
	Tracer *tracing.Tracer

	// Server configures the frame server: Server.Addr is the listen
	// address (port 0 picks one; see Analyzer.Addr), Server.Window and
	// Server.Limits.MaxFrame what WELCOME grants. Server.Logger and
	// Server.ServerID are filled in from Logger and Name when empty.
	Server server.Config

	// Admin is the HTTP listen address for /stats, /metrics and /healthz;
	// empty turns the admin server off.
	Admin string

	// Pprof serves net/http/pprof under /debug/pprof/ on the admin
	// address (profiles of the analyzer under load).
	Pprof bool

	// Out is where received messages are written as JSON lines: a file
	// path (appended to), "-" for Stdout, or empty for nowhere.
	Out string

	// Stdout is what Out "-" writes to; nil means os.Stdout.
	Stdout io.Writer

	// Delay is added to the processing of every packet, before its ACK, to
	// simulate a slow analyzer.
	Delay time.Duration

	// DedupWindow is how many packet ids below its newest are remembered
	// per agent for duplicate detection (rounded up to a multiple of 4096;
	// memory: DedupWindow/8 bytes per agent at most).
	DedupWindow uint64

	// DedupAgents is how many agents duplicate detection tracks; beyond
	// it the least recently seen agent is forgotten.
	DedupAgents int

	// Logger receives the logs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults of cmd/analyzerd: name "analyzer",
// listening on 127.0.0.1:7501, no admin server, no output, no delay, a
// dedup window of 1<<20 ids for up to 1024 agents.
func DefaultConfig() Config {
	return Config{
		Name:        "analyzer",
		Server:      server.DefaultConfig(),
		DedupWindow: 1 << 20,
		DedupAgents: 1024,
	}
}

// ErrBadConfig is wrapped by every error Validate returns.
var ErrBadConfig = errors.New("analyzerd: invalid config")

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: name must not be empty", ErrBadConfig)
	case c.Delay < 0:
		return fmt.Errorf("%w: delay %s is negative", ErrBadConfig, c.Delay)
	case c.DedupWindow == 0 || c.DedupWindow > 1<<32:
		return fmt.Errorf("%w: dedup window %d not in [1, 2^32]", ErrBadConfig, c.DedupWindow)
	case c.DedupAgents < 1:
		return fmt.Errorf("%w: dedup agents must be at least 1", ErrBadConfig)
	}
	if err := c.Server.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	return nil
}

// Stats are the analyzer's counters, as served by GET /stats.
type Stats struct {
	Name string `json:"name"`
	// Packets counts unique (agent id, packet id) pairs processed.
	Packets uint64 `json:"packets"`
	// Messages and DecodedBytes (the packets' size after decompression)
	// count unique packets only. (logdist's own byte counts are wire
	// bytes: what crossed the network, compressed.)
	Messages     uint64 `json:"messages"`
	DecodedBytes uint64 `json:"decoded_bytes"`
	// Duplicates counts packets received again after being processed.
	Duplicates uint64 `json:"duplicates"`
}

// Analyzer is a running reference analyzer.
type Analyzer struct {
	cfg Config
	log *slog.Logger
	// outLog throttles the per-packet output errors (a full disk fails
	// every packet).
	outLog *logthrottle.Throttle
	srv    *server.Server
	set    *metrics.Set

	packets, messages, bytes, duplicates *metrics.Counter
	evicted, tooOld, inflightBusy        *metrics.Counter

	mu       sync.Mutex
	dedup    *dedup
	inflight map[packetKey]struct{} // being processed: a copy arriving now is not yet a duplicate

	out     *jsonOut
	adminLn net.Listener
	admin   *http.Server
	adminWG sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

type packetKey struct {
	agent string
	id    uint64
}

// New checks cfg and returns an Analyzer; Start runs it.
func New(cfg Config) (*Analyzer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	if cfg.Server.Logger == nil {
		cfg.Server.Logger = lg.With("analyzer", cfg.Name)
	}
	if cfg.Server.MetricsPrefix == "" {
		cfg.Server.MetricsPrefix = "analyzerd_server"
	}
	if cfg.Server.ServerID == "" {
		cfg.Server.ServerID = clipID("analyzerd/" + cfg.Name)
	}
	set := metrics.NewSet()
	a := &Analyzer{
		cfg:          cfg,
		log:          lg.With("component", "analyzerd", "analyzer", cfg.Name),
		outLog:       logthrottle.New(time.Second),
		set:          set,
		packets:      set.NewCounter("analyzerd_packets_total"),
		messages:     set.NewCounter("analyzerd_messages_total"),
		bytes:        set.NewCounter("analyzerd_decoded_bytes_total"),
		duplicates:   set.NewCounter("analyzerd_duplicates_total"),
		evicted:      set.NewCounter("analyzerd_dedup_evicted_agents_total"),
		tooOld:       set.NewCounter("analyzerd_dedup_too_old_total"),
		inflightBusy: set.NewCounter("analyzerd_inflight_copy_busy_total"),
		dedup:        newDedup(cfg.DedupWindow, cfg.DedupAgents),
		inflight:     make(map[packetKey]struct{}),
	}
	set.NewGauge("analyzerd_dedup_agents", func() float64 {
		a.mu.Lock()
		defer a.mu.Unlock()
		return float64(len(a.dedup.agents))
	})
	srv, err := server.New(cfg.Server, a)
	if err != nil {
		return nil, err
	}
	a.srv = srv
	return a, nil
}

func clipID(s string) string {
	if len(s) > frame.MaxSoftware {
		return s[:frame.MaxSoftware]
	}
	return s
}

// Start opens the output, starts the frame server and the admin server,
// and logs "analyzerd <name> listening on <addr>" with the bound addresses
// as attributes addr and admin (useful with port 0).
func (a *Analyzer) Start() error {
	switch a.cfg.Out {
	case "":
	case "-":
		w := a.cfg.Stdout
		if w == nil {
			w = os.Stdout
		}
		a.out = newJSONOut(w, nil)
	default:
		f, err := os.OpenFile(a.cfg.Out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("cannot open output file: %w", err)
		}
		a.out = newJSONOut(f, f)
	}
	if a.cfg.Admin != "" {
		ln, err := net.Listen("tcp", a.cfg.Admin)
		if err != nil {
			a.closeOut()
			return fmt.Errorf("cannot listen for the admin server on %s: %w", a.cfg.Admin, err)
		}
		a.adminLn = ln
	}
	if err := a.srv.Start(); err != nil {
		if a.adminLn != nil {
			a.adminLn.Close()
		}
		a.closeOut()
		return err
	}
	adminAddr := ""
	if a.adminLn != nil {
		adminAddr = a.adminLn.Addr().String()
		a.admin = &http.Server{Handler: a.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
		a.adminWG.Add(1)
		go func() {
			defer a.adminWG.Done()
			if err := a.admin.Serve(a.adminLn); err != nil && err != http.ErrServerClosed {
				a.log.Error("admin server stopped", "admin", adminAddr, "err", err)
			}
		}()
	}
	addr := a.srv.Addr().String()
	a.log.Info(fmt.Sprintf("analyzerd %s listening on %s", a.cfg.Name, addr),
		"addr", addr, "admin", adminAddr, "out", a.cfg.Out, "delay", a.cfg.Delay)
	return nil
}

// Run starts the analyzer, waits for ctx to be done, and closes it.
func (a *Analyzer) Run(ctx context.Context) error {
	if err := a.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return a.Close()
}

// Close drains the frame server (GOAWAY; see server.Server.Close), stops
// the admin server and flushes and closes the output.
func (a *Analyzer) Close() error {
	a.closeOnce.Do(func() {
		a.log.Info("stopping frame server", "addr", addrString(a.srv.Addr()))
		srvErr := a.srv.Close()
		if a.admin != nil {
			a.log.Info("stopping admin server", "admin", a.adminLn.Addr().String())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := a.admin.Shutdown(ctx); err != nil {
				a.admin.Close()
			}
			cancel()
			a.adminWG.Wait()
		}
		if srvErr != nil {
			// A handler is stuck, most likely writing the output (a full
			// pipe): closing it would wait on the same lock.
			a.closeErr = srvErr
		} else {
			a.closeErr = a.closeOut()
		}
		a.log.Info("analyzerd stopped", "packets", a.packets.Get(), "duplicates", a.duplicates.Get())
	})
	return a.closeErr
}

func (a *Analyzer) closeOut() error {
	if a.out == nil {
		return nil
	}
	out := a.out
	a.out = nil
	if err := out.close(); err != nil {
		return fmt.Errorf("cannot close output %s: %w", a.cfg.Out, err)
	}
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Addr returns the frame server's listen address (nil before Start).
func (a *Analyzer) Addr() net.Addr { return a.srv.Addr() }

// AdminAddr returns the admin server's address, or nil if it is off.
func (a *Analyzer) AdminAddr() net.Addr {
	if a.adminLn == nil {
		return nil
	}
	return a.adminLn.Addr()
}

// Stats returns the analyzer's counters.
func (a *Analyzer) Stats() Stats {
	return Stats{
		Name:         a.cfg.Name,
		Packets:      a.packets.Get(),
		Messages:     a.messages.Get(),
		DecodedBytes: a.bytes.Get(),
		Duplicates:   a.duplicates.Get(),
	}
}

// MetricFamilies documents analyzerd's own metrics (its frame server's
// are server.MetricFamilies("analyzerd_server")).
var MetricFamilies = []promexp.Family{
	{Name: "analyzerd_packets_total", Type: "counter", Help: "Unique packets (agent id, packet id) processed."},
	{Name: "analyzerd_messages_total", Type: "counter", Help: "Log messages in the unique packets processed."},
	{Name: "analyzerd_decoded_bytes_total", Type: "counter", Help: "Bytes of the unique packets processed, after decompression (logdist's byte counts are wire bytes)."},
	{Name: "analyzerd_duplicates_total", Type: "counter", Help: "Packets received again after they were processed (acknowledged, not processed twice)."},
	{Name: "analyzerd_dedup_agents", Type: "gauge", Help: "Agents the duplicate detector remembers packet ids for."},
	{Name: "analyzerd_dedup_evicted_agents_total", Type: "counter", Help: "Agents the duplicate detector forgot to stay within --dedup-agents (their duplicates are no longer detected)."},
	{Name: "analyzerd_dedup_too_old_total", Type: "counter", Help: "Packets older than the duplicate window of their agent (processed; a duplicate of one would not be detected)."},
	{Name: "analyzerd_inflight_copy_busy_total", Type: "counter", Help: "Copies of a packet answered BUSY because another connection was processing the same packet."},
}

// WriteMetrics writes the analyzer's, its frame server's and the
// process's metrics in the Prometheus text format, with HELP and TYPE.
func (a *Analyzer) WriteMetrics(w io.Writer) {
	c := promexp.NewCatalog(MetricFamilies, server.MetricFamilies(a.cfg.Server.MetricsPrefix), promexp.Runtime)
	_ = promexp.Write(w, c, a.set.WritePrometheus, a.srv.Metrics().WritePrometheus, promexp.WriteProcess)
}

// HandlePacket implements server.Handler: it counts the packet, or the
// duplicate, and writes its messages when output is on. The packet's own
// agent id identifies it (the HELLO's, when the packet has none).
//
// A packet that came with a sampled trace context gets a span
// (analyzerd.process, child of the sender's span) when Config.Tracer is set.
func (a *Analyzer) HandlePacket(ctx context.Context, md *server.Meta, p *frame.Packet) error {
	if a.cfg.Tracer == nil || !md.Traced || !md.Trace.Sampled() {
		return a.handle(ctx, md, p)
	}
	ctx, span := a.cfg.Tracer.Tracer().Start(tracing.Remote(ctx, &md.Trace), "analyzerd.process",
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("logdist.agent_id", string(p.AgentID)),
			attribute.Int64("logdist.packet_id", int64(p.ID)),
			attribute.Int("logdist.messages", len(p.Messages)),
			attribute.String("logdist.analyzer", a.cfg.Name)))
	err := a.handle(ctx, md, p)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return err
}

func (a *Analyzer) handle(ctx context.Context, md *server.Meta, p *frame.Packet) error {
	agent := p.AgentID
	if len(agent) == 0 {
		agent = []byte(md.AgentID)
	}
	if a.out == nil && a.cfg.Delay == 0 {
		return a.count(ctx, md, agent, p)
	}
	key := packetKey{string(agent), p.ID}
	a.mu.Lock()
	if _, busy := a.inflight[key]; busy {
		// Another connection is processing the same packet (a resend
		// racing its original): it is not safe to ACK yet.
		a.mu.Unlock()
		a.inflightBusy.Inc()
		if a.log.Enabled(ctx, slog.LevelDebug) {
			a.log.Debug("copy of a packet being processed: answered BUSY", "agent_id", key.agent, "packet_id", p.ID, "seq", md.Seq)
		}
		return server.Busy(max(a.cfg.Delay, 10*time.Millisecond))
	}
	if a.dedup.contains(a.dedup.lookup(agent), p.ID) {
		a.mu.Unlock()
		a.duplicate(ctx, md, agent, p)
		return nil
	}
	a.inflight[key] = struct{}{}
	a.mu.Unlock()

	err := a.process(ctx, agent, p)

	a.mu.Lock()
	delete(a.inflight, key)
	var evicted, tooOld uint64
	if err == nil {
		ev, old := a.dedup.evicted, a.dedup.tooOld
		a.dedup.add(a.dedup.lookup(agent), agent, p.ID)
		evicted, tooOld = a.dedup.evicted-ev, a.dedup.tooOld-old
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	a.counted(md, p, evicted, tooOld)
	return nil
}

// count is handle when processing a packet does nothing (no output, no
// delay): finding out whether it is a duplicate and recording it are then
// one step under the lock, and no copy of it can be in flight on another
// connection meanwhile (inflight stays empty). The per-packet path of a
// counting analyzer: no allocation, one lock, one map lookup.
func (a *Analyzer) count(ctx context.Context, md *server.Meta, agent []byte, p *frame.Packet) error {
	a.mu.Lock()
	aw := a.dedup.lookup(agent)
	if a.dedup.contains(aw, p.ID) {
		a.mu.Unlock()
		a.duplicate(ctx, md, agent, p)
		return nil
	}
	ev, old := a.dedup.evicted, a.dedup.tooOld
	a.dedup.add(aw, agent, p.ID)
	evicted, tooOld := a.dedup.evicted-ev, a.dedup.tooOld-old
	a.mu.Unlock()
	a.counted(md, p, evicted, tooOld)
	return nil
}

// counted counts a packet processed, and what recording it cost the
// duplicate detector.
func (a *Analyzer) counted(md *server.Meta, p *frame.Packet, evicted, tooOld uint64) {
	a.packets.Inc()
	a.messages.Add(len(p.Messages))
	a.bytes.Add(md.RawBytes)
	if evicted > 0 {
		a.evicted.Add(int(evicted))
	}
	if tooOld > 0 {
		a.tooOld.Add(int(tooOld))
	}
}

// duplicate counts a packet received again after it was processed.
func (a *Analyzer) duplicate(ctx context.Context, md *server.Meta, agent []byte, p *frame.Packet) {
	a.duplicates.Inc()
	if a.log.Enabled(ctx, slog.LevelDebug) {
		a.log.Debug("duplicate packet: acknowledged, not processed again", "agent_id", string(agent), "packet_id", p.ID, "seq", md.Seq)
	}
}

func (a *Analyzer) process(ctx context.Context, agent []byte, p *frame.Packet) error {
	if a.cfg.Delay > 0 {
		t := time.NewTimer(a.cfg.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if a.out != nil {
		if err := a.out.writePacket(agent, p); err != nil {
			if ok, suppressed := a.outLog.Allow(); ok {
				a.log.Error("cannot write output; packet answered BUSY", "out", a.cfg.Out, "err", err,
					"agent_id", string(agent), "packet_id", p.ID, "suppressed", suppressed)
			}
			return fmt.Errorf("cannot write output %s: %w", a.cfg.Out, err)
		}
	}
	return nil
}

// AdminHandler returns the admin HTTP handler: GET /stats (JSON Stats),
// GET /metrics (Prometheus text), GET /healthz and, with Config.Pprof,
// GET /debug/pprof/.
func (a *Analyzer) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a.Stats())
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		a.WriteMetrics(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	if a.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}
