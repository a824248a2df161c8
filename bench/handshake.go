package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
	"github.com/logdist/logdist/internal/tlsconf"
)

// errPermanent marks a handshake failure that retrying will not fix (auth,
// a refused capability): the run stops with it.
var errPermanent = errors.New("bench: permanent")

// errGoingAway marks a handshake refused because the server is draining
// (ERROR shutdown): a connection tries the next target, and it is no
// failure.
var errGoingAway = errors.New("bench: server going away")

// item is what a connection's protocol session keeps for each DATA frame
// in flight: which body of the pool, its packet id (a resend carries the
// same), and when it was due (its latency counts from then, across
// resends).
type item struct {
	idx int32
	due int64
	id  uint64
}

// dialHandshake connects to target and does the handshake through a new
// protocol session, reading the answer without buffering beyond it, so
// that the caller may wrap the connection in any reader afterwards (idle
// connections keep no 64 KiB buffer).
func dialHandshake(ctx context.Context, target string, tlsCfg *tls.Config, cfg *session.ClientConfig, r session.Resolver[item], timeout time.Duration) (net.Conn, *session.Client[item], error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot connect to %s: %w", target, err)
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	if tlsCfg != nil {
		tc, err := tlsconf.Handshake(ctx, nc, tlsCfg, target)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		nc = tc
	}
	sess := session.NewClient[item](cfg, r)
	if _, err := nc.Write(sess.AppendHello(nil)); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("cannot send HELLO to %s: %w", target, err)
	}
	var buf [frame.HeaderSize + frame.MaxControlPayload]byte
	if _, err := io.ReadFull(nc, buf[:frame.HeaderSize]); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("no WELCOME from %s: %w", target, err)
	}
	h, err := sess.Admit(buf[:])
	if err == nil {
		payload := buf[frame.HeaderSize:h.FrameLen()]
		if _, err = io.ReadFull(nc, payload); err == nil {
			if err = h.Check(payload); err == nil {
				_, err = sess.Handle(h, payload, time.Now().UnixNano())
			}
		}
	}
	if err != nil {
		if out := sess.Output(); len(out) > 0 {
			nc.Write(out) // the ERROR of a violation
		}
		nc.Close()
		var refused *session.Refused
		if errors.As(err, &refused) {
			err = fmt.Errorf("%s refused the handshake: %s: %s", target, refused.Code, refused.Reason)
			switch {
			case refused.Permanent():
				err = fmt.Errorf("%w: %w", errPermanent, err)
			case refused.Code == frame.CodeShutdown:
				err = fmt.Errorf("%w: %w", errGoingAway, err)
			}
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("bad answer to HELLO from %s: %w", target, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, sess, nil
}
