package frame

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// allFrames returns one frame of every type, in protocol order, and what
// each must decode to.
func allFrames() ([]byte, []func(t *testing.T, h Header, payload []byte)) {
	var b []byte
	var checks []func(t *testing.T, h Header, payload []byte)
	add := func(frame []byte, check func(t *testing.T, h Header, payload []byte)) {
		b = append(b, frame...)
		checks = append(checks, check)
	}
	want := func(ty Type, seq uint64) func(t *testing.T, h Header) {
		return func(t *testing.T, h Header) {
			t.Helper()
			if h.Type() != ty || h.Seq() != seq {
				t.Fatalf("got %v seq %d, want %v seq %d", h.Type(), h.Seq(), ty, seq)
			}
		}
	}
	hello := Hello{Caps: CapZstd, Window: 16, MaxFrame: 1 << 20, AgentID: []byte("agent-1"), Token: []byte("tok"), Software: []byte("test")}
	add(AppendHello(nil, &hello), func(t *testing.T, h Header, p []byte) {
		want(TypeHello, 0)(t, h)
		var got Hello
		if err := DecodeHello(p, &got); err != nil || string(got.AgentID) != "agent-1" || string(got.Token) != "tok" || got.Window != 16 {
			t.Fatalf("HELLO %+v %v", got, err)
		}
	})
	welcome := Welcome{Caps: CapZstd, Window: 8, MaxFrame: 1 << 20, IdleTimeoutMs: 30000, ServerID: []byte("srv")}
	add(AppendWelcome(nil, &welcome), func(t *testing.T, h Header, p []byte) {
		want(TypeWelcome, 0)(t, h)
		var got Welcome
		if err := DecodeWelcome(p, &got); err != nil || got.Window != 8 || got.IdleTimeoutMs != 30000 || string(got.ServerID) != "srv" {
			t.Fatalf("WELCOME %+v %v", got, err)
		}
	})
	var enc Encoder
	dec := NewDecoder(DefaultLimits())
	for i, compress := range []bool{false, true} {
		p := realisticPacket(10, uint64(i))
		seq := uint64(i + 1)
		add(enc.AppendData(nil, seq, p, compress), func(t *testing.T, h Header, payload []byte) {
			want(TypeData, seq)(t, h)
			if h.Compressed() != compress {
				t.Fatalf("compressed %v", h.Compressed())
			}
			var got Packet
			if err := dec.Decode(h, payload, &got); err != nil {
				t.Fatal(err)
			}
			if err := equalPacket(p, &got); err != nil {
				t.Fatal(err)
			}
		})
	}
	add(AppendAck(nil, 2), func(t *testing.T, h Header, p []byte) { want(TypeAck, 2)(t, h) })
	add(AppendBusy(nil, 3, 250), func(t *testing.T, h Header, p []byte) {
		want(TypeBusy, 3)(t, h)
		if ms, err := DecodeBusy(p); ms != 250 || err != nil {
			t.Fatal(ms, err)
		}
	})
	add(AppendPing(nil, 77), func(t *testing.T, h Header, p []byte) { want(TypePing, 77)(t, h) })
	add(AppendPong(nil, 77), func(t *testing.T, h Header, p []byte) { want(TypePong, 77)(t, h) })
	add(AppendError(nil, 4, CodeFieldTooLong, "hostname"), func(t *testing.T, h Header, p []byte) {
		want(TypeError, 4)(t, h)
		if c, r, err := DecodeReason(p); c != CodeFieldTooLong || string(r) != "hostname" || err != nil {
			t.Fatal(c, r, err)
		}
	})
	add(AppendGoAway(nil, CodeShutdown, "draining"), func(t *testing.T, h Header, p []byte) {
		want(TypeGoAway, 0)(t, h)
		if c, r, err := DecodeReason(p); c != CodeShutdown || string(r) != "draining" || err != nil {
			t.Fatal(c, r, err)
		}
	})
	add(AppendError(nil, 0, CodeShutdown, "bye"), func(t *testing.T, h Header, p []byte) { want(TypeError, 0)(t, h) })
	return b, checks
}

func readAll(t *testing.T, r io.Reader, checks []func(t *testing.T, h Header, payload []byte)) {
	t.Helper()
	lim := DefaultLimits()
	fr := NewReader(r, &lim)
	for i, check := range checks {
		h, payload, err := fr.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		check(t, h, payload)
	}
	if _, _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestReaderAllFrames(t *testing.T) {
	b, checks := allFrames()
	t.Run("bytes.Reader", func(t *testing.T) { readAll(t, bytes.NewReader(b), checks) })
	t.Run("one byte at a time", func(t *testing.T) { readAll(t, &oneByteReader{b}, checks) })
	t.Run("net.Pipe", func(t *testing.T) {
		c1, c2 := net.Pipe()
		done := make(chan error, 1)
		go func() {
			// Frame by frame, as a peer would write them.
			rest := b
			lim := DefaultLimits()
			for len(rest) > 0 {
				h, err := ParseHeader(rest, &lim)
				if err != nil {
					done <- err
					return
				}
				if _, err := c1.Write(rest[:h.FrameLen()]); err != nil {
					done <- err
					return
				}
				rest = rest[h.FrameLen():]
			}
			done <- c1.Close()
		}()
		readAll(t, c2, checks)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		c2.Close()
	})
	t.Run("TCP", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		done := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			_, err = c.Write(b)
			c.Close()
			done <- err
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		readAll(t, c, checks)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestReaderErrors(t *testing.T) {
	lim := DefaultLimits()
	ack := AppendAck(nil, 1)
	busy := AppendBusy(nil, 1, 5)
	badCRC := bytes.Clone(busy)
	badCRC[len(badCRC)-1] ^= 1
	f := func(name string, b []byte, want error) {
		t.Helper()
		fr := NewReader(bytes.NewReader(b), &lim)
		var err error
		for err == nil {
			_, _, err = fr.Next()
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	f("empty", nil, io.EOF)
	f("one frame", ack, io.EOF)
	f("truncated header", ack[:20], io.ErrUnexpectedEOF)
	f("truncated second header", append(bytes.Clone(ack), ack[:1]...), io.ErrUnexpectedEOF)
	f("truncated payload", busy[:len(busy)-1], io.ErrUnexpectedEOF)
	f("header only", busy[:HeaderSize], io.ErrUnexpectedEOF)
	f("bad checksum", badCRC, ErrBadChecksum)
	f("bad magic", append([]byte("hello, logdist\r\nHost: x\r\n\r\n...."), ack...), ErrBadMagic)
	f("HTTP", append([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n...."), ack...), ErrHTTPOnFramePort)
	f("TLS", append([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}, make([]byte, 40)...), ErrTLSOnPlaintext)
	f("lost sync", append(bytes.Clone(ack), append([]byte{0}, ack...)...), ErrBadMagic)
	f("frame too large", AppendHeader(nil, TypeData, 0, 1, 1, lim.MaxFrame+1, lim.MaxFrame+1, 0), ErrFrameTooLarge)
	f("control too large", AppendHeader(nil, TypeError, 0, 0, 0, 5000, 5000, 0), ErrControlTooLarge)
}

// TestReaderPacketErrorKeepsSync: a DATA header that breaks a per-packet
// limit is reported with its header, its payload skipped, and the next
// frame reads normally.
func TestReaderPacketErrorKeepsSync(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxMessages = 5
	var enc Encoder
	tooMany := enc.AppendData(nil, 7, realisticPacket(6, 1), false)
	bomb := zstdBomb(t, 64<<20, false)
	overRaw := append(dataFrame(FlagZstd, 8, 1, bomb, lim.MaxRaw+1), bomb...)
	lying := enc.AppendData(nil, 9, realisticPacket(2, 1), false)
	copy(lying[24:28], []byte{0, 0, 0, 5}) // 5 messages announced, 2 sent: the raw length could hold 5
	stream := bytes.Join([][]byte{tooMany, overRaw, AppendAck(nil, 3), lying, AppendPing(nil, 1)}, nil)

	fr := NewReader(&oneByteReader{stream}, &lim)
	h, p, err := fr.Next()
	if err != ErrTooManyMessages || h == nil || h.Seq() != 7 || p != nil {
		t.Fatalf("too many: %v %v", h, err)
	}
	h, _, err = fr.Next()
	if err != ErrRawTooLarge || h.Seq() != 8 {
		t.Fatalf("over raw: %v", err)
	}
	h, _, err = fr.Next()
	if err != nil || h.Type() != TypeAck {
		t.Fatalf("ack after skipped frames: %v", err)
	}
	h, p, err = fr.Next()
	if err != nil || h.Seq() != 9 {
		t.Fatalf("lying count frame: %v", err)
	}
	var pk Packet
	if err := NewDecoder(lim).Decode(h, p, &pk); err != ErrCountMismatch {
		t.Fatalf("lying count decode: %v", err)
	}
	h, _, err = fr.Next()
	if err != nil || h.Type() != TypePing {
		t.Fatalf("ping: %v", err)
	}

	// A skipped payload with a bad checksum is fatal.
	bad := bytes.Clone(tooMany)
	bad[len(bad)-1] ^= 1
	fr = NewReader(bytes.NewReader(bad), &lim)
	if _, _, err := fr.Next(); err != ErrBadChecksum {
		t.Fatalf("bad checksum on skipped payload: %v", err)
	}
	// And a truncated one is an unexpected EOF.
	fr = NewReader(bytes.NewReader(tooMany[:len(tooMany)-3]), &lim)
	if _, _, err := fr.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated skipped payload: %v", err)
	}
}

// TestReaderLyingLength: a header announcing a MaxFrame payload followed by
// nothing costs memory in proportion to what was sent, not MaxFrame.
func TestReaderLyingLength(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxFrame, lim.MaxRaw = 64<<20, 64<<20
	b := AppendHeader(nil, TypeData, 0, 1, 1, lim.MaxFrame, lim.MaxFrame, 0)
	b = append(b, make([]byte, 1000)...)
	var err error
	n := allocBytes(func() {
		fr := NewReader(bytes.NewReader(b), &lim)
		_, _, err = fr.Next()
	})
	if err != io.ErrUnexpectedEOF {
		t.Fatal(err)
	}
	if n > 512<<10 {
		t.Fatalf("a 64 MiB announcement with 1000 bytes sent cost %d bytes", n)
	}
}

// TestReaderTrickle: a peer that sends a frame one byte at a time, slowly,
// still gets it read whole; the Reader never returns a partial frame.
func TestReaderTrickle(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c2.Close()
	frame := AppendError(nil, 0, CodeIdleTimeout, "slow")
	go func() {
		defer c1.Close()
		for i := range frame {
			if _, err := c1.Write(frame[i : i+1]); err != nil {
				return
			}
			if i%8 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	lim := DefaultLimits()
	fr := NewReader(c2, &lim)
	h, p, err := fr.Next()
	if err != nil || h.Type() != TypeError {
		t.Fatal(err)
	}
	if c, r, err := DecodeReason(p); c != CodeIdleTimeout || string(r) != "slow" || err != nil {
		t.Fatal(c, r, err)
	}
}

func TestReaderBuffered(t *testing.T) {
	lim := DefaultLimits()
	b := append(AppendAck(nil, 1), AppendAck(nil, 2)...)
	fr := NewReader(bytes.NewReader(b), &lim)
	if _, _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if fr.Buffered() != HeaderSize {
		t.Fatalf("Buffered %d", fr.Buffered())
	}
}

func TestReaderAllocs(t *testing.T) {
	lim := DefaultLimits()
	b, checks := allFrames()
	var stream bytes.Reader
	fr := NewReader(&stream, &lim)
	stream.Reset(b)
	for range checks { // size the payload buffer
		if _, _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	}
	n := testing.AllocsPerRun(50, func() {
		stream.Reset(b)
		fr.r.Reset(&stream)
		for range checks {
			if _, _, err := fr.Next(); err != nil {
				panic(err)
			}
		}
	})
	if n != 0 {
		t.Fatalf("Reader.Next: %v allocs per %d frames", n, len(checks))
	}
}
