package frame

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the code")

const goldenDir = "testdata/golden"

// goldenCase is one vector: how to build it, and what it must decode to.
type goldenCase struct {
	name string
	doc  string
	// build returns the frame bytes. It is re-run on every test: the files
	// must match it byte for byte unless unstable is set.
	build func(t testing.TB) []byte
	// unstable: the bytes come from the zstd encoder, whose output may
	// change with the library version; only the decoded result is pinned.
	unstable bool
	// want is the expected error (nil: valid) ...
	want error
	// ... and, for valid frames, the value decoding must give: a *Hello,
	// *Welcome, *Packet, uint32 (BUSY retry-after), or reasonWant.
	value any
}

type reasonWant struct {
	code   Code
	reason string
}

// errTruncated names the result of a file that ends inside a frame. It is
// not a protocol error with a code: the connection just ended early.
var errTruncated = io.ErrUnexpectedEOF

var goldenHello = &Hello{Caps: CapZstd, Window: 32, MaxFrame: 1 << 20, AgentID: []byte("agent-7"),
	Token: []byte("s3cret-token"), Software: []byte("logsend/0.1")}

var goldenTrace = NewTraceContext([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	[8]byte{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18}, true)

var goldenSack = []SeqRange{{4, 5}, {9, 9}}

var goldenWelcome = &Welcome{Caps: CapZstd, Window: 16, MaxFrame: 1 << 20, IdleTimeoutMs: 60000, ServerID: []byte("logdist-1")}

// goldenHelloDict offers the dict capability (a client holding
// dictionaries); goldenWelcomeDict grants it and lists two dictionary ids:
// the test dictionary's and another.
var goldenHelloDict = &Hello{Caps: CapZstd | CapSack | CapTrace | CapDict, Window: 32, MaxFrame: 4096, AgentID: []byte("agent-7"),
	Software: []byte("logdist-client/0.1.0")}

var goldenWelcomeDict = &Welcome{Caps: CapZstd | CapDict, Window: 16, MaxFrame: 1 << 20, IdleTimeoutMs: 60000, ServerID: []byte("analyzerd"),
	Dicts: []uint32{testDictID, 0x8001}}

func goldenCases() []goldenCase {
	var enc Encoder
	data := func(seq uint64, p *Packet) func(testing.TB) []byte {
		return func(testing.TB) []byte { return enc.AppendData(nil, seq, p, false) }
	}
	// withPayload builds a DATA frame around a raw packet with a correct
	// CRC and the header fields given.
	withPayload := func(f Flags, seq uint64, count uint32, payload []byte, raw uint32) []byte {
		return append(dataFrame(f, seq, count, payload, raw), payload...)
	}
	mutate := func(base func(testing.TB) []byte, fn func(b []byte) []byte) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return fn(bytes.Clone(base(t))) }
	}
	ack := func(testing.TB) []byte { return AppendAck(nil, 2) }
	plain := data(1, samplePacket())
	badAgent := onePacket()
	badAgent.AgentID = bytes.Repeat([]byte("a"), 256)
	badSev := onePacket()
	badSev.Messages[0].Severity = 8
	return []goldenCase{
		{name: "hello", doc: "HELLO from agent-7 with a token, asking for zstd and a window of 32",
			build: func(testing.TB) []byte { return AppendHello(nil, goldenHello) }, value: goldenHello},
		{name: "welcome", doc: "WELCOME granting zstd, a window of 16, 1 MiB frames, 60 s idle timeout",
			build: func(testing.TB) []byte { return AppendWelcome(nil, goldenWelcome) }, value: goldenWelcome},
		{name: "data_one", doc: "DATA seq 1, uncompressed, one message with a trace id and one attribute",
			build: data(1, onePacket()), value: onePacket()},
		{name: "data_plain", doc: "DATA seq 1, uncompressed, three messages, attributes, empty fields, a negative timestamp",
			build: plain, value: samplePacket()},
		{name: "data_zstd", doc: "DATA seq 2, zstd-compressed, 5 realistic messages",
			build:    func(testing.TB) []byte { return enc.AppendData(nil, 2, realisticPacket(5, 42), true) },
			unstable: true, value: realisticPacket(5, 42)},
		{name: "ack", doc: "ACK seq 2: every DATA with sequence <= 2 is resolved", build: ack},
		{name: "sack", doc: "SACK seq 2, ranges 4-5 and 9-9: every DATA <= 2 is resolved, DATA 4, 5 and 9 are accepted",
			build: func(testing.TB) []byte { return AppendSack(nil, 2, goldenSack) }, value: goldenSack},
		{name: "sack_overlap", doc: "a SACK seq 2 whose second range (5-9) overlaps its first (4-5)", want: ErrBadSack,
			build: func(testing.TB) []byte {
				p := binary.BigEndian.AppendUint64(nil, 4)
				p = binary.BigEndian.AppendUint64(p, 5)
				p = binary.BigEndian.AppendUint64(p, 5)
				p = binary.BigEndian.AppendUint64(p, 9)
				return AppendFrame(nil, TypeSack, 2, 0, p)
			}},
		{name: "busy", doc: "BUSY seq 3, retry after 250 ms",
			build: func(testing.TB) []byte { return AppendBusy(nil, 3, 250) }, value: uint32(250)},
		{name: "ping", doc: "PING nonce 0x0102030405060708",
			build: func(testing.TB) []byte { return AppendPing(nil, 0x0102030405060708) }},
		{name: "pong", doc: "PONG answering nonce 0x0102030405060708",
			build: func(testing.TB) []byte { return AppendPong(nil, 0x0102030405060708) }},
		{name: "error_packet", doc: "ERROR seq 4 field_too_long: packet 4 rejected, connection stays",
			build: func(testing.TB) []byte {
				return AppendError(nil, 4, CodeFieldTooLong, "hostname longer than 255 bytes")
			}, value: reasonWant{CodeFieldTooLong, "hostname longer than 255 bytes"}},
		{name: "error_fatal", doc: "ERROR seq 0 auth: fatal, the sender closes",
			build: func(testing.TB) []byte { return AppendError(nil, 0, CodeAuth, "unknown token") },
			value: reasonWant{CodeAuth, "unknown token"}},
		{name: "goaway", doc: "GOAWAY shutdown: the server is draining",
			build: func(testing.TB) []byte { return AppendGoAway(nil, CodeShutdown, "draining") },
			value: reasonWant{CodeShutdown, "draining"}},

		{name: "bad_magic", doc: "an ACK whose magic is \"LE\"", want: ErrBadMagic,
			build: mutate(ack, func(b []byte) []byte { b[1] = 'E'; return b })},
		{name: "bad_version", doc: "an ACK with version 2", want: ErrBadVersion,
			build: mutate(ack, func(b []byte) []byte { b[2] = 2; return b })},
		{name: "bad_type", doc: "a frame of type 0x0B", want: ErrBadType,
			build: mutate(ack, func(b []byte) []byte { b[3] = 0x0B; return b })},
		{name: "reserved_bits", doc: "an ACK with a reserved header byte set", want: ErrReserved,
			build: mutate(ack, func(b []byte) []byte { b[6] = 0x01; return b })},
		{name: "bad_flags", doc: "an ACK with the zstd flag", want: ErrBadFlags,
			build: mutate(ack, func(b []byte) []byte { b[4] = byte(FlagZstd); return b })},
		{name: "unknown_flag", doc: "a DATA frame with flag bit 2 set", want: ErrBadFlags,
			build: mutate(plain, func(b []byte) []byte { b[4] = 0x04; return b })},
		{name: "data_traced", doc: "data_plain carrying trace context 00-0102030405060708090a0b0c0d0e0f10-1112131415161718-01 (flag bit 1) ahead of its packet",
			build: func(t testing.TB) []byte { return AppendWithTrace(nil, plain(t), &goldenTrace) }, value: samplePacket()},
		{name: "data_traced_zstd", doc: "data_zstd carrying the trace context of data_traced ahead of its zstd frame",
			build: func(testing.TB) []byte {
				return AppendWithTrace(nil, enc.AppendData(nil, 2, realisticPacket(5, 42), true), &goldenTrace)
			}, unstable: true, value: realisticPacket(5, 42)},
		{name: "traced_too_short", doc: "a DATA frame flagged traced whose 26-byte payload holds the trace context and no packet", want: ErrBadLength,
			build: func(testing.TB) []byte { return withPayload(FlagTrace, 1, 1, goldenTrace[:], 0) }},
		{name: "trace_on_ack", doc: "an ACK with the trace flag", want: ErrBadFlags,
			build: mutate(ack, func(b []byte) []byte { b[4] = byte(FlagTrace); return b })},
		{name: "oversize_length", doc: "a DATA header announcing 1 MiB + 1 bytes (default MaxFrame is 1 MiB); no payload follows",
			want: ErrFrameTooLarge, build: func(testing.TB) []byte {
				return AppendHeader(nil, TypeData, 0, 1, 1, 1<<20+1, 1<<20+1, 0)
			}},
		{name: "control_too_large", doc: "an ERROR header announcing 4097 payload bytes",
			want: ErrControlTooLarge, build: func(testing.TB) []byte {
				return AppendHeader(nil, TypeError, 0, 0, 0, MaxControlPayload+1, MaxControlPayload+1, 0)
			}},
		{name: "ack_with_payload", doc: "an ACK announcing a 4-byte payload", want: ErrBadLength,
			build: func(testing.TB) []byte { return AppendFrame(nil, TypeAck, 2, 0, []byte{0, 0, 0, 0}) }},
		{name: "data_seq_zero", doc: "a DATA frame with sequence 0", want: ErrBadLength,
			build: mutate(plain, func(b []byte) []byte { Header(b).SetSeq(0); return b })},
		{name: "bad_crc", doc: "data_plain with the last byte of its CRC flipped", want: ErrBadChecksum,
			build: mutate(plain, func(b []byte) []byte { b[31] ^= 0x01; return b })},
		{name: "truncated_header", doc: "the first 20 bytes of an ACK", want: errTruncated,
			build: mutate(ack, func(b []byte) []byte { return b[:20] })},
		{name: "truncated_payload", doc: "data_plain without its last 10 bytes", want: errTruncated,
			build: mutate(plain, func(b []byte) []byte { return b[:len(b)-10] })},
		{name: "zip_bomb", doc: "DATA flagged zstd announcing 4096 raw bytes; the zstd frame holds 64 MiB of zeros (and says so)",
			want: ErrRawTooLarge, build: func(t testing.TB) []byte {
				return withPayload(FlagZstd, 1, 1, zstdBomb(t, 64<<20, true), 4096)
			}},
		{name: "zip_bomb_streaming", doc: "DATA flagged zstd announcing 4096 raw bytes; the zstd frame holds 64 MiB of zeros, no content size",
			want: ErrRawTooLarge, build: func(t testing.TB) []byte {
				return withPayload(FlagZstd, 1, 1, zstdBomb(t, 64<<20, false), 4096)
			}},
		{name: "zip_bomb_rle", doc: "DATA flagged zstd announcing 4096 raw bytes; the zstd frame (made by the zstd command-line tool from 100,000 zero bytes: no content size, one RLE block) decodes to more",
			want: ErrRawTooLarge, build: func(testing.TB) []byte {
				return withPayload(FlagZstd, 1, 1, zstdCLIZeros, 4096)
			}},
		{name: "raw_too_large", doc: "a DATA header announcing 4 MiB + 1 raw bytes (default MaxRaw is 4 MiB)",
			want: ErrRawTooLarge, build: func(testing.TB) []byte {
				return withPayload(FlagZstd, 1, 1, []byte{1, 2, 3, 4}, 4<<20+1)
			}},
		{name: "raw_mismatch", doc: "data_zstd's payload with a raw length one larger than it decompresses to",
			want: ErrRawMismatch, build: func(testing.TB) []byte {
				b := enc.AppendData(nil, 2, realisticPacket(5, 42), true)
				h := Header(b)
				return withPayload(FlagZstd, 2, 5, b[HeaderSize:], h.RawLen()+1)
			}},
		{name: "bad_compression", doc: "DATA flagged zstd whose payload is not zstd", want: ErrBadCompression,
			build: func(testing.TB) []byte {
				return withPayload(FlagZstd, 1, 1, []byte("this is not a zstd frame"), 100)
			}},
		{name: "count_mismatch", doc: "data_one with the header's message count set to 2", want: ErrCountMismatch,
			build: func(testing.TB) []byte {
				raw := AppendPacket(nil, onePacket())
				return withPayload(0, 1, 2, raw, uint32(len(raw)))
			}},
		{name: "count_impossible", doc: "a DATA header counting 100 messages in 100 raw bytes", want: ErrCountMismatch,
			build: func(testing.TB) []byte {
				raw := make([]byte, 100)
				return withPayload(0, 1, 100, raw, 100)
			}},
		{name: "too_many_messages", doc: "a DATA header counting 10001 messages (default MaxMessages is 10000)",
			want: ErrTooManyMessages, build: func(testing.TB) []byte {
				raw := make([]byte, 16)
				return withPayload(FlagZstd, 1, 10001, raw, 4<<20)
			}},
		{name: "field_too_long", doc: "data_one with a 256-byte agent id (default MaxField is 255)", want: ErrFieldTooLong,
			build: data(1, badAgent)},
		{name: "bad_severity", doc: "data_one with severity 8", want: ErrBadSeverity, build: data(1, badSev)},
		{name: "trailing_bytes", doc: "data_one with one extra byte after the last field (lengths and CRC adjusted)",
			want: ErrTrailing, build: func(testing.TB) []byte {
				raw := append(AppendPacket(nil, onePacket()), 0)
				return withPayload(0, 1, 1, raw, uint32(len(raw)))
			}},
		{name: "truncated_packet", doc: "data_one's packet without its last byte (lengths and CRC adjusted)",
			want: ErrTruncated, build: func(testing.TB) []byte {
				raw := AppendPacket(nil, onePacket())
				raw = raw[:len(raw)-1]
				return withPayload(0, 1, 1, raw, uint32(len(raw)))
			}},
		{name: "hello_no_agent", doc: "a HELLO with an empty agent id", want: ErrBadHandshake,
			build: func(testing.TB) []byte { return AppendHello(nil, &Hello{Window: 1}) }},

		{name: "hello_dict", doc: "HELLO offering zstd, sack, trace and dict (bit 3: the client holds zstd dictionaries)",
			build: func(testing.TB) []byte { return AppendHello(nil, goldenHelloDict) }, value: goldenHelloDict},
		{name: "welcome_dict", doc: "WELCOME granting zstd and dict, listing dictionaries 1279524865 (0x4c440001, testdict.zdict) and 32769",
			build: func(testing.TB) []byte { return AppendWelcome(nil, goldenWelcomeDict) }, value: goldenWelcomeDict},
		{name: "welcome_dict_zero", doc: "welcome_dict with its second dictionary id set to 0", want: ErrBadHandshake,
			build: func(testing.TB) []byte {
				w := *goldenWelcomeDict
				w.Dicts = []uint32{testDictID, 0}
				return AppendWelcome(nil, &w)
			}},
		{name: "welcome_dict_no_list", doc: "a WELCOME granting dict whose payload ends after the server id, without the list", want: ErrBadHandshake,
			build: func(testing.TB) []byte {
				w := *goldenWelcomeDict
				w.Dicts = nil
				p := AppendWelcome(nil, &w)[HeaderSize:]
				binary.BigEndian.PutUint32(p, uint32(CapZstd|CapDict))
				return AppendFrame(nil, TypeWelcome, 0, 0, p)
			}},
		{name: "data_zstd_dict", doc: "DATA seq 3, zstd-compressed with dictionary 1279524865 (testdict.zdict, named in the zstd frame header), 1 realistic message",
			build: func(t testing.TB) []byte {
				return (&Encoder{Dict: testDict(t)}).AppendData(nil, 3, realisticPacket(1, 4242), true)
			},
			unstable: true, value: realisticPacket(1, 4242)},
		{name: "data_unknown_dict", doc: "data_zstd_dict with the zstd frame header's dictionary id changed to 1279524866, which the receiver does not hold (CRC adjusted)",
			want: ErrUnknownDictionary, build: func(t testing.TB) []byte {
				b := (&Encoder{Dict: testDict(t)}).AppendData(nil, 3, realisticPacket(1, 4242), true)
				h := Header(b)
				p := bytes.Clone(b[HeaderSize:])
				// Frame_Header_Descriptor: a 4-byte id, after the
				// Window_Descriptor byte unless Single_Segment is set.
				if p[4]&3 != 3 {
					t.Fatalf("zstd frame header descriptor %#x: not a 4-byte dictionary id", p[4])
				}
				at := 6
				if p[4]&0x20 != 0 {
					at = 5
				}
				binary.LittleEndian.PutUint32(p[at:], testDictID+1)
				return withPayload(FlagZstd, 3, 1, p, h.RawLen())
			}},
	}
}

// readHex reads a golden file: hex digits, whitespace ignored, '#' starts a
// comment that runs to the end of the line.
func readHex(name string) ([]byte, error) {
	text, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var digits strings.Builder
	for _, line := range strings.Split(string(text), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	return hex.DecodeString(digits.String())
}

// writeHex formats a frame for a golden file: the header on one line, the
// payload 32 bytes per line.
func writeHex(name, doc string, b []byte) error {
	var s strings.Builder
	fmt.Fprintf(&s, "# %s\n# %s\n# %d bytes\n", filepath.Base(name), doc, len(b))
	hdr := b[:min(len(b), HeaderSize)]
	fmt.Fprintf(&s, "# header: magic ver type flags | reserved | payload len | raw len | sequence | count | crc\n")
	if len(hdr) == HeaderSize {
		fmt.Fprintf(&s, "%x %x %x %x %x %x %x %x %x\n", hdr[0:2], hdr[2:3], hdr[3:4], hdr[4:5], hdr[5:8],
			hdr[8:12], hdr[12:16], hdr[16:24], hdr[24:28])
		fmt.Fprintf(&s, "%x\n", hdr[28:32])
	} else {
		fmt.Fprintf(&s, "%x\n", hdr)
	}
	if len(b) > HeaderSize {
		s.WriteString("# payload\n")
		for p := b[HeaderSize:]; len(p) > 0; p = p[min(len(p), 32):] {
			fmt.Fprintf(&s, "%x\n", p[:min(len(p), 32)])
		}
	}
	return os.WriteFile(name, []byte(s.String()), 0o644)
}

// describe decodes b, which must hold exactly one frame, with the public
// API under DefaultLimits, the way docs/PROTOCOL.md says a receiver does,
// and returns the result as "key=value" lines (the .want format of
// testdata/golden/README.md) plus the decoded value.
func describe(b []byte) (string, any, error) {
	lim := DefaultLimits()
	var s strings.Builder
	fail := func(err error) (string, any, error) {
		s.Reset()
		s.WriteString("result=error\n")
		var fe *Error
		switch {
		case errors.As(err, &fe):
			fmt.Fprintf(&s, "error=%s\ncode=0x%04x\nfatal=%v\ngo_error=%s\n", fe.Code, uint16(fe.Code), fe.Code.Fatal(), sentinelName(err))
		case err == io.ErrUnexpectedEOF:
			s.WriteString("error=truncated\n")
		default:
			fmt.Fprintf(&s, "error=%v\n", err)
		}
		return s.String(), nil, err
	}
	r := NewReader(bytes.NewReader(b), &lim)
	dict, err := testDictOnce()
	if err != nil {
		return "", nil, err
	}
	h, payload, err := r.Next()
	if err != nil {
		return fail(err)
	}
	if _, _, err := r.Next(); err != io.EOF {
		return "", nil, fmt.Errorf("golden file holds more than one frame: %v", err)
	}
	fmt.Fprintf(&s, "result=ok\ntype=%s\nflags=0x%02x\nseq=%d\ncount=%d\npayload_len=%d\nraw_len=%d\ncrc=0x%08x\n",
		h.Type(), uint8(h.Flags()), h.Seq(), h.Count(), h.PayloadLen(), h.RawLen(), h.CRC())
	str := func(key string, v []byte) { fmt.Fprintf(&s, "%s=%q\n", key, v) }
	var value any
	switch h.Type() {
	case TypeHello:
		var v Hello
		if err := DecodeHello(payload, &v); err != nil {
			return fail(err)
		}
		fmt.Fprintf(&s, "hello.caps=0x%08x\nhello.window=%d\nhello.max_frame=%d\n", uint32(v.Caps), v.Window, v.MaxFrame)
		str("hello.agent_id", v.AgentID)
		str("hello.token", v.Token)
		str("hello.software", v.Software)
		value = &v
	case TypeWelcome:
		var v Welcome
		if err := DecodeWelcome(payload, &v); err != nil {
			return fail(err)
		}
		fmt.Fprintf(&s, "welcome.caps=0x%08x\nwelcome.window=%d\nwelcome.max_frame=%d\nwelcome.idle_timeout_ms=%d\n",
			uint32(v.Caps), v.Window, v.MaxFrame, v.IdleTimeoutMs)
		str("welcome.server_id", v.ServerID)
		if len(v.Dicts) > 0 {
			s.WriteString("welcome.dicts=")
			for i, id := range v.Dicts {
				if i > 0 {
					s.WriteByte(',')
				}
				fmt.Fprintf(&s, "%d", id)
			}
			s.WriteByte('\n')
		}
		value = &v
	case TypeData:
		var p Packet
		dec := NewDecoder(lim)
		dec.Dicts = Dicts{dict} // testdict.zdict, as README.md says
		if err := dec.Decode(h, payload, &p); err != nil {
			return fail(err)
		}
		if id := DictID(append(append([]byte(nil), h...), payload...)); id != 0 {
			fmt.Fprintf(&s, "dict=%d\n", id)
		}
		if tc, ok := TraceOf(append(append([]byte(nil), h...), payload...)); ok {
			fmt.Fprintf(&s, "trace=%s\n", tc.String())
		}
		fmt.Fprintf(&s, "packet.id=%d\n", p.ID)
		str("packet.agent_id", p.AgentID)
		str("packet.trace_id", p.TraceID)
		fmt.Fprintf(&s, "packet.messages=%d\n", len(p.Messages))
		for i, m := range p.Messages {
			fmt.Fprintf(&s, "msg.%d.timestamp=%d\nmsg.%d.severity=%d\nmsg.%d.facility=%d\n", i, m.Timestamp, i, m.Severity, i, m.Facility)
			str(fmt.Sprintf("msg.%d.hostname", i), m.Hostname)
			str(fmt.Sprintf("msg.%d.app", i), m.App)
			str(fmt.Sprintf("msg.%d.body", i), m.Body)
			fmt.Fprintf(&s, "msg.%d.attrs=%d\n", i, len(m.Attrs))
			for j, a := range m.Attrs {
				str(fmt.Sprintf("msg.%d.attr.%d.key", i, j), a.Key)
				str(fmt.Sprintf("msg.%d.attr.%d.value", i, j), a.Value)
			}
		}
		value = &p
	case TypeSack:
		ranges, err := DecodeSack(payload, h.Seq(), nil)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(&s, "sack.ranges=%d\n", len(ranges))
		for i, r := range ranges {
			fmt.Fprintf(&s, "sack.%d.first=%d\nsack.%d.last=%d\n", i, r.First, i, r.Last)
		}
		value = ranges
	case TypeBusy:
		ms, err := DecodeBusy(payload)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(&s, "busy.retry_after_ms=%d\n", ms)
		value = ms
	case TypeError, TypeGoAway:
		code, reason, err := DecodeReason(payload)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(&s, "reason.code=0x%04x\nreason.code_name=%s\n", uint16(code), code)
		str("reason.text", reason)
		value = reasonWant{code, string(reason)}
	}
	return s.String(), value, nil
}

func sentinelName(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "?"
}

func TestGolden(t *testing.T) {
	cases := goldenCases()
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			b := c.build(t)
			want, _, _ := describe(b)
			if err := writeHex(filepath.Join(goldenDir, c.name+".hex"), c.doc, b); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(goldenDir, c.name+".want"), []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	names := map[string]bool{}
	for _, c := range cases {
		names[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			b, err := readHex(filepath.Join(goldenDir, c.name+".hex"))
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			wantText, err := os.ReadFile(filepath.Join(goldenDir, c.name+".want"))
			if err != nil {
				t.Fatal(err)
			}
			got, value, err := describe(b)
			if got != string(wantText) {
				t.Errorf("decoding %s.hex gives\n%s\n%s.want says\n%s", c.name, got, c.name, wantText)
			}
			// The table, written by hand, is checked too: the files cannot
			// drift together.
			if err != c.want && !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
			if err == nil {
				checkGoldenValue(t, c.value, value)
			}
			if !c.unstable {
				if built := c.build(t); !bytes.Equal(built, b) {
					t.Errorf("the code now encodes %s differently:\n file % x\n code % x", c.name, b, built)
				}
			}
		})
	}
	// Every file in the directory belongs to a case.
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.hex"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".hex"); !names[name] {
			t.Errorf("%s has no case in goldenCases", f)
		}
	}
}

func checkGoldenValue(t *testing.T, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case nil:
		if got != nil {
			t.Errorf("decoded a %T, expected no payload", got)
		}
	case *Hello:
		g := got.(*Hello)
		if g.Caps != w.Caps || g.Window != w.Window || g.MaxFrame != w.MaxFrame || !bytes.Equal(g.AgentID, w.AgentID) ||
			!bytes.Equal(g.Token, w.Token) || !bytes.Equal(g.Software, w.Software) {
			t.Errorf("HELLO %+v, want %+v", g, w)
		}
	case *Welcome:
		g := got.(*Welcome)
		if g.Caps != w.Caps || g.Window != w.Window || g.MaxFrame != w.MaxFrame || g.IdleTimeoutMs != w.IdleTimeoutMs ||
			!bytes.Equal(g.ServerID, w.ServerID) || !slices.Equal(g.Dicts, w.Dicts) {
			t.Errorf("WELCOME %+v, want %+v", g, w)
		}
	case *Packet:
		if err := equalPacket(w, got.(*Packet)); err != nil {
			t.Error(err)
		}
	case []SeqRange:
		if g := got.([]SeqRange); !slices.Equal(g, w) {
			t.Errorf("SACK ranges %v, want %v", g, w)
		}
	default:
		if got != want {
			t.Errorf("decoded %v, want %v", got, want)
		}
	}
}

// goldenSeeds returns the frames of every golden file, for fuzz seeds.
func goldenSeeds(tb testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.hex"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no golden files: %v", err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := readHex(f)
		if err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		out = append(out, b)
	}
	return out
}

// zstdCLIZeros is what "head -c 100000 /dev/zero | zstd -c" writes (zstd
// 1.5.4): a frame without content size holding one RLE block of 100,000
// zeros, and its checksum.
var zstdCLIZeros = []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x55, 0x00, 0x00, 0x10, 0x00, 0x00, 0x01, 0x00, 0x9b, 0x86,
	0x39, 0xc0, 0x02, 0xdb, 0x23, 0x4e, 0xf3}
