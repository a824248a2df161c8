package frame

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The worked example of docs/PROTOCOL.md is generated here from the real
// encoder, written to testdata/protocol-example.txt by -update, and checked
// to appear verbatim in the document.

const exampleFile = "testdata/protocol-example.txt"

// annotate prints b as "hex  comment" lines, one per field. fields are
// (length, comment) pairs and must cover b exactly.
type field struct {
	n    int
	note string
}

func annotate(s *strings.Builder, title string, b []byte, fields []field) {
	fmt.Fprintf(s, "%s (%d bytes)\n", title, len(b))
	off := 0
	for _, f := range fields {
		if off+f.n > len(b) {
			panic(fmt.Sprintf("BUG: example %s: field %q past the end", title, f.note))
		}
		h := fmt.Sprintf("%x", b[off:off+f.n])
		if len(h) > 40 {
			// Long fields wrap at 20 bytes, the note on the first line.
			for i := 0; i < len(h); i += 40 {
				note := ""
				if i == 0 {
					note = f.note
				}
				fmt.Fprintf(s, "  %-40s  %s\n", h[i:min(len(h), i+40)], note)
			}
		} else {
			fmt.Fprintf(s, "  %-40s  %s\n", h, f.note)
		}
		off += f.n
	}
	if off != len(b) {
		panic(fmt.Sprintf("BUG: example %s: fields cover %d of %d bytes", title, off, len(b)))
	}
	s.WriteString("\n")
}

func headerFields(b []byte) []field {
	h := Header(b)
	return []field{
		{2, `magic "LD"`},
		{1, fmt.Sprintf("version %d", h.Version())},
		{1, fmt.Sprintf("type %s (0x%02x)", h.Type(), uint8(h.Type()))},
		{1, fmt.Sprintf("flags 0x%02x", uint8(h.Flags()))},
		{3, "reserved, zero"},
		{4, fmt.Sprintf("payload length %d", h.PayloadLen())},
		{4, fmt.Sprintf("raw length %d", h.RawLen())},
		{8, fmt.Sprintf("sequence %d", h.Seq())},
		{4, fmt.Sprintf("count %d", h.Count())},
		{4, fmt.Sprintf("CRC-32C of the payload 0x%08x", h.CRC())},
	}
}

func str16Fields(name string, v []byte) []field {
	if len(v) == 0 {
		return []field{{2, name + " length 0 (none)"}}
	}
	return []field{{2, fmt.Sprintf("%s length %d", name, len(v))}, {len(v), fmt.Sprintf("%s %q", name, v)}}
}

func protocolExample() string {
	var s strings.Builder
	hello := &Hello{Caps: CapZstd, Window: 32, MaxFrame: 1 << 20, AgentID: []byte("agent-7"), Token: []byte("s3cret"), Software: []byte("logsend/0.1")}
	b := AppendHello(nil, hello)
	f := headerFields(b)
	f = append(f, field{4, "capabilities 0x00000001 (zstd)"}, field{4, "window 32"}, field{4, "max frame 1048576"})
	f = append(f, str16Fields("agent id", hello.AgentID)...)
	f = append(f, str16Fields("token", hello.Token)...)
	f = append(f, str16Fields("software", hello.Software)...)
	annotate(&s, "1. client -> server: HELLO", b, f)

	welcome := &Welcome{Caps: CapZstd, Window: 16, MaxFrame: 1 << 20, IdleTimeoutMs: 60000, ServerID: []byte("logdist-1")}
	b = AppendWelcome(nil, welcome)
	f = headerFields(b)
	f = append(f, field{4, "capabilities 0x00000001 (zstd)"}, field{4, "window 16 = min(32 requested, 16 configured)"},
		field{4, "max frame 1048576"}, field{4, "idle timeout 60000 ms"})
	f = append(f, str16Fields("server id", welcome.ServerID)...)
	annotate(&s, "2. server -> client: WELCOME", b, f)

	p := &Packet{ID: 1795000000000000001, AgentID: []byte("agent-7"), TraceID: []byte("t-42"), Messages: []Message{{
		Timestamp: 1795000000123456789, Severity: SevInfo, Facility: 16, Hostname: []byte("web-01"), App: []byte("nginx"),
		Body: []byte("GET /healthz 200"), Attrs: []Attr{{Key: []byte("req_id"), Value: []byte("r1")}},
	}}}
	var enc Encoder
	b = enc.AppendData(nil, 1, p, false)
	m := &p.Messages[0]
	f = headerFields(b)
	f = append(f, field{8, fmt.Sprintf("packet id %d", p.ID)})
	f = append(f, str16Fields("agent id", p.AgentID)...)
	f = append(f, str16Fields("trace id", p.TraceID)...)
	f = append(f, field{4, "message count 1 (equals the header's count)"},
		field{8, fmt.Sprintf("message 0: timestamp %d ns", m.Timestamp)},
		field{1, fmt.Sprintf("severity %d (%s)", m.Severity, m.Severity)},
		field{1, fmt.Sprintf("facility %d (local0)", m.Facility)},
		field{2, fmt.Sprintf("attribute count %d", len(m.Attrs))})
	f = append(f, str16Fields("hostname", m.Hostname)...)
	f = append(f, str16Fields("app", m.App)...)
	f = append(f, field{4, fmt.Sprintf("body length %d", len(m.Body))}, field{len(m.Body), fmt.Sprintf("body %q", m.Body)})
	f = append(f, str16Fields("attribute 0 key", m.Attrs[0].Key)...)
	f = append(f, field{4, fmt.Sprintf("attribute 0 value length %d", len(m.Attrs[0].Value))},
		field{len(m.Attrs[0].Value), fmt.Sprintf("attribute 0 value %q", m.Attrs[0].Value)})
	annotate(&s, "3. client -> server: DATA, sequence 1, uncompressed", b, f)

	b = AppendAck(nil, 1)
	annotate(&s, "4. server -> client: ACK 1 (DATA 1 is safe)", b, headerFields(b))

	// A self-check of the example against the decoders.
	lim := DefaultLimits()
	var got Packet
	data := enc.AppendData(nil, 1, p, false)
	h, err := ParseHeader(data, &lim)
	if err != nil || h.Check(data[HeaderSize:]) != nil || NewDecoder(lim).Decode(h, data[HeaderSize:], &got) != nil ||
		equalPacket(p, &got) != nil || binary.BigEndian.Uint32(data[8:12]) != uint32(p.RawSize()) {
		panic("BUG: the protocol example does not decode")
	}
	return s.String()
}

func TestProtocolExample(t *testing.T) {
	ex := protocolExample()
	if *update {
		if err := os.WriteFile(exampleFile, []byte(ex), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != ex {
		t.Fatalf("%s is stale: run go test ./frame -run 'TestGolden|TestProtocolExample' -update", exampleFile)
	}
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Skipf("docs/PROTOCOL.md: %v", err)
	}
	if !strings.Contains(string(doc), ex) {
		t.Fatalf("docs/PROTOCOL.md does not contain the worked example of %s verbatim", exampleFile)
	}
}
