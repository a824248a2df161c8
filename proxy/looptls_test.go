package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/internal/tlsconf/tlstest"
)

// memSocket is the socket under a loop-native TLS connection in tests: it
// reads what the test gives it and keeps what is written.
type memSocket struct {
	gnet.Conn // methods the tests do not reach panic
	in, out   []byte
	r         int // in[r:] is still to read
}

func (m *memSocket) Read(p []byte) (int, error) {
	n := copy(p, m.in[m.r:])
	m.r += n
	if n == 0 && len(p) > 0 {
		return 0, io.ErrShortBuffer // as gnet's
	}
	return n, nil
}

func (m *memSocket) InboundBuffered() int        { return len(m.in) - m.r }
func (m *memSocket) Write(p []byte) (int, error) { m.out = append(m.out, p...); return len(p), nil }
func (m *memSocket) Close() error                { return nil }

// loopTLSPair returns both ends of a TLS connection, handshaken over a
// pipe and then moved onto memSockets, as the loop holds them.
func loopTLSPair(t *testing.T) (srv, cli *tlsConn) {
	t.Helper()
	ca := tlstest.NewCA(t, "ca")
	pair := ca.Issue(t, tlstest.Localhost("logdist"))
	cert, err := tls.LoadX509KeyPair(pair.Cert, pair.Key)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	// No session tickets: nothing may be left on the pipe after the
	// handshakes.
	scfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, SessionTicketsDisabled: true}
	ccfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	a, b := net.Pipe()
	rs, rc := &recordConn{Conn: a}, &recordConn{Conn: b}
	ts, tc := tls.Server(rs, scfg), tls.Client(rc, ccfg)
	done := make(chan error, 1)
	go func() { done <- ts.Handshake() }()
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	srv = &tlsConn{tc: ts, rc: rs}
	cli = &tlsConn{tc: tc, rc: rc}
	for _, x := range []*tlsConn{srv, cli} {
		m := &memSocket{}
		x.rc.onLoop = true
		x.Conn, x.rc.raw = m, m
	}
	return srv, cli
}

// carry moves what from has sent into to's socket.
func carry(from, to *tlsConn) {
	f, t := from.Conn.(*memSocket), to.Conn.(*memSocket)
	if t.r == len(t.in) {
		t.in, t.r = t.in[:0], 0
	}
	t.in = append(t.in, f.out...)
	f.out = f.out[:0]
}

// The loop-native record layer: writes come out as records, records in
// any pieces come back as the plaintext, a large Writev arrives whole, and
// the peer's close_notify ends the reads with io.EOF.
func TestLoopTLSRoundTrip(t *testing.T) {
	srv, cli := loopTLSPair(t)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16,000 bytes: two records
	if _, err := cli.Write(msg); err != nil {
		t.Fatal(err)
	}
	// One byte at a time: every read but the last that completes a record
	// finds a partial record, which crypto/tls must keep.
	sent := cli.Conn.(*memSocket).out
	cli.Conn.(*memSocket).out = nil
	var got []byte
	for i := range sent {
		m := srv.Conn.(*memSocket)
		m.in = append(m.in, sent[i])
		if _, err := srv.fill(); err != nil {
			t.Fatalf("after %d of %d bytes: %v", i+1, len(sent), err)
		}
		got = append(got, srv.in[srv.off:]...)
		srv.off = len(srv.in)
		srv.release()
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("server read %d bytes, want the %d sent", len(got), len(msg))
	}

	// A Writev of small and large buffers, more than sendChunk in all.
	var bufs [][]byte
	var want []byte
	for i := 0; len(want) < 2*sendChunk; i++ {
		b := bytes.Repeat([]byte{byte(i)}, 1400)
		if i%50 == 0 {
			b = bytes.Repeat([]byte{byte(i)}, sealChunk+10)
		}
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	n, err := srv.Writev(bufs)
	if err != nil || n != len(want) {
		t.Fatalf("Writev: %d, %v; want %d", n, err, len(want))
	}
	carry(srv, cli)
	if _, err := cli.fill(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cli.in[cli.off:], want) {
		t.Fatalf("client read %d bytes, want the %d written", cli.InboundBuffered(), len(want))
	}
	if _, err := cli.Discard(-1); err != nil {
		t.Fatal(err)
	}
	cli.release()

	if err := cli.tc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := cli.send(); err != nil {
		t.Fatal(err)
	}
	carry(cli, srv)
	if _, err := srv.fill(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close_notify: %v, want EOF", err)
	}
}

// A loop-native TLS connection allocates nothing of its own per exchange
// (packets in, answers out with Write, packets out with Writev, answers
// in). crypto/tls allocates one small atLeastReader each time it reads
// from its connection: at most once per record, and once more for the
// read that finds nothing left; the bridge paid the same.
func TestLoopTLSAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop what is Put")
	}
	srv, cli := loopTLSPair(t)
	packet := bytes.Repeat([]byte("x"), 1400)
	ack := bytes.Repeat([]byte("a"), 40)
	bufs := [][]byte{packet, packet, packet, packet}
	send := func() {
		if _, err := cli.Write(packet); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Write(ack); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Writev(bufs); err != nil {
			t.Fatal(err)
		}
	}
	receive := func() {
		carry(cli, srv)
		if _, err := srv.fill(); err != nil {
			t.Fatal(err)
		}
		if got := srv.InboundBuffered(); got != len(packet) {
			t.Fatalf("server got %d bytes, want %d", got, len(packet))
		}
		_, _ = srv.Discard(-1)
		srv.release()
		carry(srv, cli)
		if _, err := cli.fill(); err != nil {
			t.Fatal(err)
		}
		if got := cli.InboundBuffered(); got != len(ack)+4*len(packet) {
			t.Fatalf("client got %d bytes, want %d", got, len(ack)+4*len(packet))
		}
		_, _ = cli.Discard(-1)
		cli.release()
	}
	for range 100 {
		send()
		receive()
	}
	allocs := testing.AllocsPerRun(1000, func() { send(); receive() })
	t.Logf("%.2f allocations per exchange", allocs)
	if allocs > 0 {
		// Only the reads may allocate (crypto/tls): the writes must not.
		if wa := testing.AllocsPerRun(1000, func() {
			send()
			srv.Conn.(*memSocket).out = srv.Conn.(*memSocket).out[:0]
			cli.Conn.(*memSocket).out = cli.Conn.(*memSocket).out[:0]
		}); wa != 0 {
			t.Fatalf("loop-native TLS writes allocate %.2f times per exchange, want 0", wa)
		}
		// Reads: the server reads one record, the client two (the answer's
		// and the packets'); each read of the connection costs crypto/tls
		// an allocation, plus one per fill for the read that finds nothing.
		if allocs > 5 {
			t.Fatalf("a loop-native TLS exchange allocates %.2f times, want at most 5 (crypto/tls's reads)", allocs)
		}
	}
}

// What a connection keeps of a frame between reads stays in a buffer of
// its size's class, not in the large one the read needed.
func TestLoopTLSPartialFrameBuffer(t *testing.T) {
	srv, cli := loopTLSPair(t)
	big := bytes.Repeat([]byte("0123456789"), 20_000) // 200,000 bytes
	if _, err := cli.Write(big); err != nil {
		t.Fatal(err)
	}
	carry(cli, srv)
	if _, err := srv.fill(); err != nil {
		t.Fatal(err)
	}
	if srv.InboundBuffered() != len(big) || cap(srv.in) < len(big) {
		t.Fatalf("read %d bytes into a buffer of %d, want %d", srv.InboundBuffered(), cap(srv.in), len(big))
	}
	if _, err := srv.Discard(len(big) - 100); err != nil { // a frame's first 100 bytes stay
		t.Fatal(err)
	}
	srv.release()
	if srv.InboundBuffered() != 100 || cap(srv.in) != minPlainClass || !bytes.Equal(srv.in[srv.off:], big[len(big)-100:]) {
		t.Fatalf("kept %d bytes in a buffer of %d, want the last 100 in one of %d", srv.InboundBuffered(), cap(srv.in), minPlainClass)
	}
	if _, err := cli.Write([]byte("rest")); err != nil {
		t.Fatal(err)
	}
	carry(cli, srv)
	if _, err := srv.fill(); err != nil {
		t.Fatal(err)
	}
	if want := append(append([]byte(nil), big[len(big)-100:]...), "rest"...); !bytes.Equal(srv.in[srv.off:], want) {
		t.Fatalf("after more input: %q", srv.in[srv.off:])
	}
}

func TestPlainClasses(t *testing.T) {
	for _, c := range []struct{ n, class int }{{0, 0}, {8 << 10, 0}, {8<<10 + 1, 1}, {32 << 10, 1}, {2 << 20, 4}, {2<<20 + 1, plainClasses}} {
		if got := plainClass(c.n); got != c.class {
			t.Errorf("plainClass(%d) = %d, want %d", c.n, got, c.class)
		}
	}
	for _, n := range []int{1, 8 << 10, 100 << 10, 2 << 20, 3 << 20} {
		bp := getPlain(n)
		if cap(*bp) < n || len(*bp) != 0 {
			t.Errorf("getPlain(%d): len %d cap %d", n, len(*bp), cap(*bp))
		}
		putPlain(bp, *bp)
	}
}
