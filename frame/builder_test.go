package frame

import (
	"bytes"
	"testing"
)

func TestPacketBuilderMatchesAppendPacket(t *testing.T) {
	p := &Packet{ID: 42, AgentID: []byte("syslog/10.0.0.1"), TraceID: []byte("t"), Messages: []Message{
		{Timestamp: 1, Severity: SevWarning, Facility: 16, Hostname: []byte("gw"), App: []byte("sshd"), Body: []byte("Accepted publickey"),
			Attrs: []Attr{{Key: []byte("procid"), Value: []byte("811")}}},
		{Timestamp: 2, Severity: SevInfo, Body: []byte("second")},
	}}
	var b PacketBuilder
	b.Reset(p.ID, p.AgentID, p.TraceID)
	for i := range p.Messages {
		b.Add(&p.Messages[i])
	}
	want := AppendPacket(nil, p)
	if !bytes.Equal(b.Raw(), want) {
		t.Fatalf("builder:\n%x\nAppendPacket:\n%x", b.Raw(), want)
	}
	if b.Count() != 2 || b.Len() != len(want) || p.RawSize() != len(want) {
		t.Fatalf("count %d len %d raw size %d, want 2 %d %d", b.Count(), b.Len(), p.RawSize(), len(want), len(want))
	}
	n := 0
	for i := range p.Messages {
		n += MessageSize(&p.Messages[i])
	}
	if n+packetFixed+len(p.AgentID)+len(p.TraceID) != len(want) {
		t.Fatalf("MessageSize sums to %d", n)
	}
	lim := DefaultLimits()
	var q Packet
	if err := DecodePacket(b.Raw(), 2, &lim, &q); err != nil || q.ID != 42 || string(q.Messages[0].Attrs[0].Value) != "811" {
		t.Fatalf("decode: %v %+v", err, q)
	}
	b.Reset(7, nil, nil)
	if allocs := testing.AllocsPerRun(100, func() {
		b.Reset(7, p.AgentID, nil)
		b.Add(&p.Messages[0])
		_ = b.Raw()
	}); allocs != 0 {
		t.Fatalf("PacketBuilder allocates %.1f times per packet once warm", allocs)
	}
}
