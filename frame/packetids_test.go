package frame

import "testing"

func TestPacketIDs(t *testing.T) {
	raw := AppendPacket(nil, &Packet{ID: 42, AgentID: []byte("web-1"), Messages: []Message{{Body: []byte("x")}}})
	id, agent, ok := PacketIDs(raw, 256)
	if !ok || id != 42 || string(agent) != "web-1" {
		t.Fatalf("PacketIDs = %d, %q, %v", id, agent, ok)
	}
	if _, _, ok := PacketIDs(raw[:12], 256); ok {
		t.Fatal("a packet cut inside its agent id read as whole")
	}
	if _, _, ok := PacketIDs(raw, 4); ok {
		t.Fatal("an agent id over the field limit accepted")
	}
	if n := testing.AllocsPerRun(100, func() { PacketIDs(raw, 256) }); n != 0 {
		t.Fatalf("PacketIDs allocates %v times", n)
	}
}
