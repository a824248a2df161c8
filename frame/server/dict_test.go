package server_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
	"github.com/logdist/logdist/frame/server/servertest"
)

// logPacket is a packet of n log lines that compress well with the test
// dictionary (trained on lines like them).
func logPacket(id uint64, n int) *frame.Packet {
	p := packet(id, n)
	for i := range p.Messages {
		p.Messages[i].Body = fmt.Appendf(nil, "2026-11-26T21:%02d:07.123456Z level=INFO req_id=01JD3K7V9QX%04d method=GET path=/api/v2/orders/%d user=alice status=200 bytes=512 latency=3.2ms upstream=10.1.2.3:8080 msg=\"request served\"", i%60, i, id)
	}
	return p
}

func testDict(t *testing.T) *frame.Dict {
	t.Helper()
	d, err := frame.LoadDict("../testdata/golden/testdict.zdict")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A server holding a dictionary grants dict to a client that offers it,
// listing its id; decodes packets compressed with it; and rejects, with
// unknown_dictionary and counted, a packet naming another, keeping the
// connection.
func TestDictServer(t *testing.T) {
	d := testDict(t)
	b := bytes.Clone(d.Bytes())
	binary.LittleEndian.PutUint32(b[4:8], 0x8001)
	other, err := frame.ParseDict(b)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	srv, addr := start(t, rec, func(c *server.Config) { c.Dicts = frame.Dicts{d} })

	// Not offered: not granted, as before.
	c := dial(t, addr)
	if c.Welcome.Caps&frame.CapDict != 0 || len(c.Welcome.Dicts) != 0 {
		t.Fatalf("granted dict unasked: %+v", c.Welcome)
	}
	// Offered: granted, with the id.
	c = dialRaw(t, addr)
	if err := c.Handshake(&frame.Hello{Caps: frame.CapZstd | frame.CapDict, Window: 16, AgentID: []byte("agent-1")}); err != nil {
		t.Fatal(err)
	}
	if c.Welcome.Caps != frame.CapZstd|frame.CapDict || !slices.Equal(c.Welcome.Dicts, []uint32{d.ID()}) {
		t.Fatalf("WELCOME %+v", c.Welcome)
	}
	with := frame.Encoder{Dict: d}
	wrong := frame.Encoder{Dict: other}
	var buf []byte
	buf = with.AppendData(buf, 1, logPacket(1, 1), true)
	buf = wrong.AppendData(buf, 2, logPacket(2, 1), true)
	buf = with.AppendData(buf, 3, logPacket(3, 10), true)
	if frame.DictID(buf) != d.ID() {
		t.Fatal("the test packet is not compressed with the dictionary")
	}
	if err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	f := skipAcks(t, c, 1)
	if f.Type != frame.TypeError || f.Seq != 2 || f.Code != frame.CodeUnknownDict {
		t.Fatalf("want ERROR seq=2 unknown_dictionary, got %s", f)
	}
	if !strings.Contains(f.Reason, "dictionary 32769") {
		t.Fatalf("reason %q does not name the dictionary", f.Reason)
	}
	if err := c.WaitAck(3); err != nil {
		t.Fatal(err)
	}
	if got := rec.ids; len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("handler saw packets %v, want [1 3]", got)
	}
	var out bytes.Buffer
	srv.Metrics().WritePrometheus(&out)
	if !strings.Contains(out.String(), `frame_server_packets_rejected_total{code="unknown_dictionary"} 1`) {
		t.Fatalf("unknown dictionary not counted:\n%s", out.String())
	}
}

// A server without dictionaries does not grant dict, and rejects a packet
// that names one.
func TestDictServerWithout(t *testing.T) {
	d := testDict(t)
	rec := &recorder{}
	_, addr := start(t, rec, nil)
	c := dialRaw(t, addr)
	if err := c.Handshake(&frame.Hello{Caps: frame.CapZstd | frame.CapDict, Window: 16, AgentID: []byte("agent-1")}); err != nil {
		t.Fatal(err)
	}
	if c.Welcome.Caps != frame.CapZstd || len(c.Welcome.Dicts) != 0 {
		t.Fatalf("WELCOME %+v", c.Welcome)
	}
	buf := (&frame.Encoder{Dict: d}).AppendData(nil, 1, logPacket(1, 1), true)
	buf = (&frame.Encoder{}).AppendData(buf, 2, logPacket(2, 1), true)
	if err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	expect(t, c, frame.TypeError, 1, frame.CodeUnknownDict)
	if err := c.WaitAck(2); err != nil {
		t.Fatal(err)
	}
}

// skipAcks reads the next frame that is not an ACK up to seq (the server
// acknowledges what it has read whenever it has handled it all).
func skipAcks(t *testing.T, c *servertest.Client, seq uint64) servertest.Frame {
	t.Helper()
	for {
		f, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != frame.TypeAck || f.Seq > seq {
			return f
		}
	}
}

func TestDictServerConfig(t *testing.T) {
	d := testDict(t)
	cfg := server.DefaultConfig()
	cfg.Dicts = frame.Dicts{d, d}
	if _, err := server.New(cfg, &recorder{}); err == nil || !strings.Contains(err.Error(), "two dictionaries") {
		t.Fatalf("duplicate dictionaries: %v", err)
	}
}
