package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
)

// idleSet holds handshaken connections that send nothing but PINGs, to
// measure what an idle agent costs the server. Each has one goroutine and
// a 32-byte buffer, so ten thousand of them cost the generator little.
type idleSet struct {
	conns   []net.Conn
	nOpen   int
	nLost   atomic.Int64
	closing atomic.Bool
	wg      sync.WaitGroup
}

// openIdle opens n connections to target (64 dials at a time) and returns
// once each is handshaken or has failed.
func openIdle(ctx context.Context, target string, tlsCfg *tls.Config, cfg *session.ClientConfig, n int, timeout time.Duration) *idleSet {
	s := &idleSet{conns: make([]net.Conn, n)}
	idles := make([]time.Duration, n)
	targets := strings.Split(target, ",") // round robin over several
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, 64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				nc, sess, err := dialHandshake(ctx, strings.TrimSpace(targets[i%len(targets)]), tlsCfg, cfg, nil, timeout)
				if err == nil {
					s.conns[i], idles[i] = nc, sess.IdleTimeout()
				}
			}
		}()
	}
	wg.Wait()
	for i, nc := range s.conns {
		if nc == nil {
			continue
		}
		s.nOpen++
		s.wg.Add(1)
		go s.hold(nc, idles[i])
	}
	return s
}

// hold PINGs a third of the way into the server's idle timeout and reads
// the PONGs, until the connection or the set is closed.
func (s *idleSet) hold(nc net.Conn, idle time.Duration) {
	defer s.wg.Done()
	every := 30 * time.Second
	if idle > 0 {
		every = idle / 3
	}
	var hb [frame.HeaderSize]byte
	var ping [frame.HeaderSize]byte
	lim := frame.DefaultLimits()
	var nonce uint64
	for {
		_ = nc.SetReadDeadline(time.Now().Add(every))
		_, err := io.ReadFull(nc, hb[:])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			nonce++
			_ = nc.SetWriteDeadline(time.Now().Add(every))
			if _, err := nc.Write(frame.AppendPing(ping[:0], nonce)); err == nil {
				continue
			}
		}
		if err == nil {
			h, perr := frame.ParseHeader(hb[:], &lim)
			if perr == nil && h.Type() != frame.TypeError && h.Type() != frame.TypeGoAway {
				if _, err = io.CopyN(io.Discard, nc, int64(h.PayloadLen())); err == nil {
					continue
				}
			}
		}
		if !s.closing.Load() {
			s.nLost.Add(1)
		}
		nc.Close()
		return
	}
}

func (s *idleSet) open() int { return s.nOpen }
func (s *idleSet) lost() int { return int(s.nLost.Load()) }

// close closes every connection and waits for their goroutines.
func (s *idleSet) close() {
	s.closing.Store(true)
	for _, nc := range s.conns {
		if nc != nil {
			nc.Close()
		}
	}
	s.wg.Wait()
}
