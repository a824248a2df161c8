// Package tracing connects logdist, analyzerd and logsend to OpenTelemetry:
// spans exported over OTLP/HTTP, and the conversion between the wire's
// trace context (frame.TraceContext, PROTOCOL.md 4.7) and OpenTelemetry's.
//
// Tracing is off unless an endpoint is configured, and then only sampled
// packets cost anything: a packet is traced when it arrives with a sampled
// context, or, arriving without one, when the sampling ratio picks it.
// Spans leave through a batching processor with a bounded queue (the
// SDK's default, 2,048 spans): when the collector is slow or down, spans
// are dropped, never the packets.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/logdist/logdist/frame"
)

// Config configures a Tracer.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's base URL, such as
	// http://127.0.0.1:4318 (spans go to its /v1/traces) or a full URL
	// ending in /v1/traces. Empty: tracing is off.
	Endpoint string
	// SampleRatio is the share (0 to 1) of packets arriving without a
	// trace context that start a trace here.
	SampleRatio float64
	// Service and Instance name the process (service.name,
	// service.instance.id); Version is service.version.
	Service, Instance, Version string
}

// Validate checks the endpoint and the ratio.
func (c Config) Validate() error {
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return fmt.Errorf("--trace-sample %g: want a ratio from 0 to 1", c.SampleRatio)
	}
	if c.Endpoint == "" {
		return nil
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--otlp-endpoint %q: want an http:// or https:// URL of an OTLP/HTTP collector, such as http://127.0.0.1:4318", c.Endpoint)
	}
	return nil
}

// Tracer makes the spans of one process. A nil *Tracer is off: every
// method is safe on it and does nothing.
type Tracer struct {
	tp    *sdktrace.TracerProvider
	tr    trace.Tracer
	ratio float64
}

// New returns the Tracer cfg asks for, or nil when cfg.Endpoint is empty.
func New(cfg Config) (*Tracer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Endpoint == "" {
		return nil, nil
	}
	u, _ := url.Parse(cfg.Endpoint)
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host), otlptracehttp.WithTimeout(5 * time.Second)}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	if p := strings.TrimSuffix(u.Path, "/"); p != "" {
		if !strings.HasSuffix(p, "/v1/traces") {
			p += "/v1/traces"
		}
		opts = append(opts, otlptracehttp.WithURLPath(p))
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("--otlp-endpoint %s: %w", cfg.Endpoint, err)
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(cfg.Service)}
	if cfg.Instance != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(cfg.Instance))
	}
	if cfg.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.Version))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		// The decision is made before a span starts (Sample, and the
		// context's sampled flag): every span started is recorded.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, attrs...)),
	)
	return &Tracer{tp: tp, tr: tp.Tracer("github.com/logdist/logdist/" + cfg.Service), ratio: cfg.SampleRatio}, nil
}

// Tracer returns the OpenTelemetry tracer (nil when t is off).
func (t *Tracer) Tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tr
}

// Sample reports whether a packet that came without a trace context
// starts a trace (the sampling ratio).
func (t *Tracer) Sample() bool {
	return t != nil && t.ratio > 0 && rand.Float64() < t.ratio
}

// Shutdown exports the spans still queued and stops.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return errors.Join(t.tp.ForceFlush(ctx), t.tp.Shutdown(ctx))
}

// Remote returns a context whose parent is the span tc names (a span of
// another process).
func Remote(ctx context.Context, tc *frame.TraceContext) context.Context {
	flags := trace.TraceFlags(0)
	if tc.Sampled() {
		flags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tc.TraceID(), SpanID: tc.SpanID(), TraceFlags: flags, Remote: true,
	})
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// Context returns the wire trace context of span.
func Context(span trace.Span) frame.TraceContext {
	sc := span.SpanContext()
	return frame.NewTraceContext(sc.TraceID(), sc.SpanID(), sc.IsSampled())
}

// Packets gives an agent's packets their spans (name, a root span each)
// for frame/client's Config.Trace, and ends each when the packet is
// resolved (End, from Config.OnResult). The sampling ratio picks the
// packets traced.
type Packets struct {
	t    *Tracer
	name string
	mu   sync.Mutex
	open map[uint64]trace.Span
}

// NewPackets returns the spans of the packets t samples (nil when t is
// off).
func NewPackets(t *Tracer, name string) *Packets {
	if t == nil {
		return nil
	}
	return &Packets{t: t, name: name, open: map[uint64]trace.Span{}}
}

// Trace starts packet id's span if the ratio picks it (frame/client's
// Config.Trace).
func (p *Packets) Trace(id uint64) (frame.TraceContext, bool) {
	if !p.t.Sample() {
		return frame.TraceContext{}, false
	}
	_, span := p.t.tr.Start(context.Background(), p.name, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.Int64("logdist.packet_id", int64(id))))
	p.mu.Lock()
	p.open[id] = span
	p.mu.Unlock()
	return Context(span), true
}

// End ends packet id's span: acknowledged when err is nil.
func (p *Packets) End(id uint64, err error) {
	if p == nil {
		return
	}
	p.mu.Lock()
	span, ok := p.open[id]
	delete(p.open, id)
	p.mu.Unlock()
	if !ok {
		return
	}
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
}

// Close ends the spans of packets never resolved.
func (p *Packets) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, span := range p.open {
		span.SetStatus(otelcodes.Error, "not acknowledged")
		span.End()
		delete(p.open, id)
	}
}
