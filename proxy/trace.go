package proxy

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/tracing"
)

// Tracing (Config.Tracer): a traced packet gets a span from its receipt
// to its agent's ACK (logdist.packet, child of the agent's span when it
// came with a context), with an event when it waits in the queue, and a
// child span per attempt to deliver it (logdist.dispatch: written to an
// analyzer until that analyzer's answer; a re-dispatch ends one attempt
// with an error and starts the next). Each attempt's span id is written
// into the frame's trace context, so the analyzer's span is its child.
// Only traced records carry a *packetTrace; every hook below is behind
// record.traced, one byte in the cache line the hot path reads anyway.

// packetTrace is a traced record's spans.
type packetTrace struct {
	ctx      context.Context // carries the packet span
	packet   trace.Span
	dispatch trace.Span // the attempt under way, nil between attempts
}

// traceIn decides whether the agent's DATA frame fb is traced and starts
// its packet span. It returns the frame to forward: fb, or, for a packet
// that starts a trace here, a copy carrying the new context in the loop's
// scratch buffer.
func (lp *loop) traceIn(a *agentConn, h frame.Header, fb []byte) ([]byte, *packetTrace) {
	tr := lp.conf.Tracer
	ctx := context.Background()
	tc, ok := frame.TraceOf(fb)
	switch {
	case ok && tc.Valid():
		if !tc.Sampled() {
			return fb, nil // the agent's decision: not recorded
		}
		ctx = tracing.Remote(ctx, &tc)
	case tr.Sample():
	default:
		return fb, nil
	}
	ctx, span := tr.Tracer().Start(ctx, "logdist.packet", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("logdist.agent_id", string(a.sess.AgentID())),
			attribute.String("logdist.identity", a.sess.Identity()),
			attribute.Int64("logdist.agent_seq", int64(h.Seq())),
			attribute.Int("logdist.messages", int(h.Count())),
			attribute.Int("logdist.wire_bytes", len(fb)),
			attribute.Int("logdist.loop", lp.idx)))
	if !ok || !tc.Valid() {
		own := tracing.Context(span)
		lp.traceBuf = frame.AppendWithTrace(lp.traceBuf[:0], fb, &own)
		fb = lp.traceBuf
	}
	return fb, &packetTrace{ctx: ctx, packet: span}
}

// traceDispatch starts the attempt to deliver r to u and makes it the
// parent of the analyzer's span; for an analyzer that was not granted the
// trace capability it removes the context from the frame instead.
func (lp *loop) traceDispatch(r *record, u *upstream) {
	pt := r.tr
	if pt == nil {
		return
	}
	if pt.dispatch != nil {
		pt.dispatch.SetStatus(codes.Error, "dispatched again")
		pt.dispatch.End()
	}
	_, pt.dispatch = lp.conf.Tracer.Tracer().Start(pt.ctx, "logdist.dispatch", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("logdist.analyzer", u.name), attribute.String("server.address", u.addr)))
	if frame.Header(r.buf).Traced() {
		frame.SetTraceParent(r.buf, pt.dispatch.SpanContext().SpanID())
	}
}

// traceEvent records what happened to a traced packet between attempts
// (queued, BUSY, a lost connection).
func (r *record) traceEvent(name string, attrs ...attribute.KeyValue) {
	if pt := r.tr; pt != nil {
		pt.packet.AddEvent(name, trace.WithAttributes(attrs...))
	}
}

// traceAttemptFailed ends the attempt under way with err.
func (r *record) traceAttemptFailed(why string) {
	if pt := r.tr; pt != nil && pt.dispatch != nil {
		pt.dispatch.SetStatus(codes.Error, why)
		pt.dispatch.End()
		pt.dispatch = nil
	}
}

// traceEnd ends r's spans: err empty for a packet delivered and
// acknowledged, else why it was not.
func (r *record) traceEnd(err string) {
	pt := r.tr
	if pt == nil {
		return
	}
	now := time.Now()
	if pt.dispatch != nil {
		if err != "" {
			pt.dispatch.SetStatus(codes.Error, err)
		}
		pt.dispatch.End(trace.WithTimestamp(now))
	}
	if err != "" {
		pt.packet.SetStatus(codes.Error, err)
	}
	pt.packet.End(trace.WithTimestamp(now))
	r.tr = nil
}
