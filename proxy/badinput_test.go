package proxy_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server/servertest"
	"github.com/logdist/logdist/proxy"
)

// Bad input gets the documented ERROR and a close, and logdist keeps
// serving the other connections.
func TestBadInput(t *testing.T) {
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, func(c *proxy.Config) {
		c.HandshakeTimeout = 200 * time.Millisecond
	})
	defer stopAll(t, s, as)
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))
	good, err := servertest.Dial(s.Addr().String(), "good")
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()

	hello := frame.AppendHello(nil, &frame.Hello{Caps: frame.CapZstd, Window: 16, MaxFrame: 1 << 20, AgentID: []byte("bad")})
	oversize := frame.AppendHeader(nil, frame.TypeData, 0, 1, 1, 1<<30, 1<<30, 0)
	badCRC := (&frame.Encoder{}).AppendData(nil, 1, pkt("bad", 1), false)
	badCRC[len(badCRC)-1] ^= 0xFF
	badSeq := (&frame.Encoder{}).AppendData(nil, 5, pkt("bad", 1), false)
	cases := []struct {
		name string
		send []byte
		code frame.Code
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789"), frame.CodeBadMagic},
		{"oversized length", append(append([]byte(nil), hello...), oversize...), frame.CodeFrameTooLarge},
		{"bad checksum", append(append([]byte(nil), hello...), badCRC...), frame.CodeBadChecksum},
		{"bad sequence", append(append([]byte(nil), hello...), badSeq...), frame.CodeBadSequence},
		{"data before hello", badSeq, frame.CodeBadHandshake},
		{"no hello", nil, frame.CodeHandshakeTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := servertest.DialRaw(s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.send != nil {
				if err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			var f servertest.Frame
			for {
				f, err = c.Next()
				if err != nil {
					t.Fatalf("want ERROR %s, got %v", tc.code, err)
				}
				if f.Type != frame.TypeWelcome {
					break
				}
			}
			if f.Type != frame.TypeError || f.Seq != 0 || f.Code != tc.code {
				t.Fatalf("got %s, want ERROR seq=0 code=%s", f, tc.code)
			}
			if _, err := c.Next(); err == nil {
				t.Fatal("connection still open after a fatal ERROR")
			}
		})
		// The well-behaved agent is unaffected.
		if _, err := good.Send(pkt("good", uint64(len(tc.name))), true); err != nil {
			t.Fatal(err)
		}
		if err := good.WaitAck(good.LastSeq()); err != nil {
			t.Fatalf("after %s: good agent: %v", tc.name, err)
		}
	}
}

// A DATA header that frames correctly but breaks a per-packet limit gets a
// packet ERROR with its sequence, and the connection carries on.
func TestPerPacketHeaderReject(t *testing.T) {
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, nil)
	defer stopAll(t, s, as)
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))
	c, err := servertest.Dial(s.Addr().String(), "pp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bad := c.AppendData(nil, pkt("pp", 1), false)
	binary.BigEndian.PutUint32(bad[24:28], 20000) // count above MaxMessages; CRC covers the payload only
	if err := c.Write(bad); err != nil {
		t.Fatal(err)
	}
	f, err := c.Next()
	if err != nil || f.Type != frame.TypeError || f.Seq != 1 || f.Code != frame.CodeTooManyMessages {
		t.Fatalf("got %v %v, want ERROR seq=1 too_many_messages", f, err)
	}
	if _, err := c.Send(pkt("pp", 2), true); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitAck(2); err != nil {
		t.Fatalf("connection did not carry on after a packet ERROR: %v", err)
	}
}

// A peer exceeding its window is cut off: the window is the flow control.
func TestWindowExceeded(t *testing.T) {
	// An analyzer that never acks keeps packets in flight.
	as := []*analyzer{startAnalyzer(t, "a1", "127.0.0.1:0")}
	s := startProxy(t, as, []float64{1}, nil)
	defer stopAll(t, s, as)
	waitFor(t, "analyzer up", 5*time.Second, allHealthy(s, 1))
	c, err := servertest.DialRaw(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Handshake(&frame.Hello{Caps: frame.CapZstd, Window: 4, MaxFrame: 1 << 20, AgentID: []byte("w")}); err != nil {
		t.Fatal(err)
	}
	// 64 packets in one write with a window of 4: the analyzer cannot have
	// acked 60 of them before the proxy reads the fifth.
	var buf []byte
	for i := uint64(1); i <= 64; i++ {
		buf = c.AppendData(buf, pkt("w", i), false)
	}
	if err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := c.Next()
		if err != nil {
			t.Fatalf("connection closed without ERROR window_exceeded: %v", err)
		}
		if f.Type == frame.TypeError {
			if f.Code != frame.CodeWindowExceeded {
				t.Fatalf("got %s, want window_exceeded", f)
			}
			return
		}
	}
}
