package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/testtool"
)

// An analyzer connection that ends as expected — the analyzer drained
// after its GOAWAY, logdist stopping, the analyzer removed — is not a
// warning, and says why (make run's Ctrl-C printed "lost analyzer
// connection ... err=<nil>" per analyzer and loop); one that ends
// unannounced still is, with the reason, never err=<nil>.
func TestAnalyzerCloseLogged(t *testing.T) {
	var logs testtool.JSONLog
	h := newHarnessOpts(t, harnessOpts{msgs: 1, caps: frame.CapZstd, edit: func(c *Config) { c.Logger = logs.Logger() }})
	logs.Take(t)
	f := func(what string, close func(u *upstream, fc *fakeConn), wantLevel, wantMsg, wantReason string) {
		t.Helper()
		u, fc := h.lp.ups[0], h.ups[0]
		close(u, fc)
		var got map[string]any
		for _, r := range logs.Take(t) {
			if r["msg"] == "analyzer connection closed" || r["msg"] == "lost analyzer connection" {
				if got != nil {
					t.Fatalf("%s: two records for one close: %v, %v", what, got, r)
				}
				got = r
			}
			if v, ok := r["err"]; ok && r["level"] == "WARN" && (v == nil || v == "<nil>") {
				t.Errorf("%s: a warning with err=<nil>: %v", what, r)
			}
		}
		if got == nil || got["level"] != wantLevel || got["msg"] != wantMsg || !strings.Contains(fmt.Sprint(got["reason"]), wantReason) {
			t.Fatalf("%s: logged %v; want %s %q with reason %q", what, got, wantLevel, wantMsg, wantReason)
		}
		if _, ok := got["err"]; ok {
			t.Errorf("%s: %v has err", what, got)
		}
		// Up again for the next case.
		fc = &fakeConn{}
		if _, action := u.onOpen(fc); action != gnet.None {
			t.Fatal("upstream refused to open")
		}
		fc.in = frame.AppendWelcome(nil, &frame.Welcome{Caps: frame.CapZstd, Window: 1024, MaxFrame: 1 << 20})
		u.onTraffic(fc)
		h.ups[0] = fc
		logs.Take(t)
	}
	goAway := func(u *upstream, fc *fakeConn) {
		fc.in = frame.AppendGoAway(nil, frame.CodeShutdown, "server shutting down; reconnect elsewhere")
		if action := u.onTraffic(fc); action != gnet.Close {
			t.Fatalf("GOAWAY with nothing in flight: %v, want the connection closed", action)
		}
	}
	// The analyzer drains: GOAWAY, and logdist closes (nothing in flight).
	f("drained", func(u *upstream, fc *fakeConn) { goAway(u, fc); u.onClose(nil) },
		"DEBUG", "analyzer connection closed", "drained after the analyzer's GOAWAY")
	// The analyzer closes first, after its GOAWAY.
	f("closed after GOAWAY", func(u *upstream, fc *fakeConn) {
		fc.in = frame.AppendGoAway(nil, frame.CodeShutdown, "bye")
		frame.Header(h.data).SetSeq(h.agent.sess.LastSeq() + 1) // something in flight: not done yet
		h.ac.in = h.data
		for h.lp.ups[0].sess.Unresolved() == 0 {
			frame.Header(h.data).SetSeq(h.agent.sess.LastSeq() + 1)
			h.ac.in = h.data
			h.agent.onTraffic(h.ac)
		}
		u.onTraffic(fc)
		u.onClose(&os.SyscallError{Syscall: "read", Err: io.EOF})
		h.ackAll()
	}, "INFO", "analyzer connection closed", "the analyzer closed it after its GOAWAY")
	// logdist closed it, having said why (heartbeats, ack timeout).
	f("closed by logdist", func(u *upstream, fc *fakeConn) {
		u.closeNow(noEvent, "3 heartbeats missed in a row")
		u.onClose(nil)
	}, "DEBUG", "analyzer connection closed", "3 heartbeats missed in a row")
	// Unannounced: a warning, with the reason.
	f("EOF", func(u *upstream, fc *fakeConn) { u.onClose(&os.SyscallError{Syscall: "read", Err: io.EOF}) },
		"WARN", "lost analyzer connection", "without GOAWAY (EOF)")
	f("reset", func(u *upstream, fc *fakeConn) { u.onClose(errors.New("read: connection reset by peer")) },
		"WARN", "lost analyzer connection", "connection reset by peer")
	// logdist is stopping: whatever the analyzer does is expected.
	h.lp.s.draining.Store(true)
	f("logdist stopping, EOF", func(u *upstream, fc *fakeConn) { u.onClose(&os.SyscallError{Syscall: "read", Err: io.EOF}) },
		"DEBUG", "analyzer connection closed", "while logdist was stopping")
	f("logdist stopping", func(u *upstream, fc *fakeConn) { u.onClose(nil) },
		"DEBUG", "analyzer connection closed", "logdist is stopping")
}

// records returns those of msg among recs.
func records(recs []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// A packet an analyzer refuses is logged naming it (agent id, packet id,
// analyzer), once a second however many follow.
func TestAnalyzerRejectedLogged(t *testing.T) {
	var logs testtool.JSONLog
	h := newHarnessOpts(t, harnessOpts{msgs: 1, caps: frame.CapZstd, edit: func(c *Config) { c.Logger = logs.Logger() }})
	for range 20 {
		frame.Header(h.data).SetSeq(h.agent.sess.LastSeq() + 1)
		h.ac.in = h.data
		h.agent.onTraffic(h.ac)
		for i, u := range h.lp.ups {
			if u.sess.Unresolved() > 0 {
				fc := h.ups[i]
				fc.in = frame.AppendError(nil, u.sess.Seq(), frame.CodeRejected, "not today")
				u.onTraffic(fc)
			}
		}
	}
	recs := records(logs.Take(t), "analyzer rejected a packet; so does logdist, to its agent")
	if len(recs) == 0 || len(recs) > 2 {
		t.Fatalf("%d log lines for 20 rejected packets, want them throttled to one a second", len(recs))
	}
	r := recs[0]
	if r["agent_id"] != "bench-agent" || r["packet_id"] != 1.0 || r["code"] != "rejected" || r["reason"] != "not today" ||
		r["analyzer"] == nil || r["suppressed"] != 0.0 || r["level"] != "WARN" {
		t.Fatalf("record %v", r)
	}
}

// A packet that does not decode (--inspect full) is logged naming it: its
// ids are read from the payload, decompressed again for the log line.
func TestUndecodablePacketLogged(t *testing.T) {
	var logs testtool.JSONLog
	h := newHarnessOpts(t, harnessOpts{msgs: 1, caps: frame.CapZstd, edit: func(c *Config) {
		c.Logger = logs.Logger()
		c.Inspect = InspectFull
	}})
	bad := &frame.Packet{ID: 7777, AgentID: []byte("web-9"), Messages: []frame.Message{{Body: bytes.Repeat([]byte("compressible "), 50)}}}
	// The header says two messages, the payload holds one.
	h.ac.in = (&frame.Encoder{}).AppendCompressed(nil, h.agent.sess.LastSeq()+1, 2, frame.AppendPacket(nil, bad))
	if !frame.Header(h.ac.in).Compressed() {
		t.Fatal("the test packet did not compress")
	}
	h.agent.onTraffic(h.ac)
	recs := records(logs.Take(t), "packet rejected")
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	if r := recs[0]; r["agent_id"] != "web-9" || r["packet_id"] != 7777.0 || r["code"] != "too_many_messages" || r["remote"] == nil {
		t.Fatalf("record %v", r)
	}
}
