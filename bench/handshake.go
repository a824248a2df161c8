package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/logdist/logdist/frame"
)

// errPermanent marks a handshake failure that retrying will not fix (auth,
// a refused capability): the run stops with it.
var errPermanent = errors.New("bench: permanent")

// dialHandshake connects to target, sends hello and reads the answer
// without buffering beyond it, so that the caller may wrap the connection
// in any reader afterwards (idle connections keep no 64 KiB buffer).
func dialHandshake(ctx context.Context, target string, hello []byte, timeout time.Duration) (net.Conn, frame.Welcome, error) {
	var w frame.Welcome
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, w, fmt.Errorf("cannot connect to %s: %w", target, err)
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	if _, err := nc.Write(hello); err != nil {
		nc.Close()
		return nil, w, fmt.Errorf("cannot send HELLO to %s: %w", target, err)
	}
	var hb [frame.HeaderSize]byte
	var pb [frame.MaxControlPayload]byte
	lim := frame.DefaultLimits()
	if _, err := io.ReadFull(nc, hb[:]); err != nil {
		nc.Close()
		return nil, w, fmt.Errorf("no WELCOME from %s: %w", target, err)
	}
	h, err := frame.ParseHeader(hb[:], &lim)
	if err != nil || h.PayloadLen() > frame.MaxControlPayload {
		nc.Close()
		return nil, w, fmt.Errorf("bad answer to HELLO from %s: %v", target, err)
	}
	payload := pb[:h.PayloadLen()]
	if _, err := io.ReadFull(nc, payload); err != nil {
		nc.Close()
		return nil, w, fmt.Errorf("no WELCOME from %s: %w", target, err)
	}
	if err := h.Check(payload); err != nil {
		nc.Close()
		return nil, w, fmt.Errorf("bad WELCOME from %s: %w", target, err)
	}
	switch h.Type() {
	case frame.TypeWelcome:
		if err := frame.DecodeWelcome(payload, &w); err != nil {
			nc.Close()
			return nil, w, fmt.Errorf("bad WELCOME from %s: %w", target, err)
		}
		w.ServerID = append([]byte(nil), w.ServerID...)
	case frame.TypeError:
		code, reason, _ := frame.DecodeReason(payload)
		nc.Close()
		err := fmt.Errorf("%s refused the handshake: %s: %s", target, code, reason)
		if code == frame.CodeAuth || code == frame.CodeBadHandshake {
			err = fmt.Errorf("%w: %w", errPermanent, err)
		}
		return nil, w, err
	default:
		nc.Close()
		return nil, w, fmt.Errorf("%s answered HELLO with %s", target, h.Type())
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, w, nil
}
