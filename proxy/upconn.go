package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/balancer"
)

// The life of a connection to an analyzer: dial (off the loop), enroll,
// handshake, heartbeats, ack timeouts, close and redial with backoff.

// dial connects to the analyzer from a goroutine (through the upstream
// transport if the analyzer wants TLS) and enrolls the socket on this
// loop; the loop learns the outcome in onOpen or dialFailed.
func (u *upstream) dial() {
	if u.state != upIdle || u.retiring {
		return
	}
	u.state = upDialing
	s, lp := u.lp.s, u.lp
	if lp.el == nil {
		return // driven by hand in tests
	}
	conf := lp.conf
	wrap := u.st.cfg.TLS
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, conf.DialTimeout)
		defer cancel()
		d := net.Dialer{}
		var conn net.Conn
		var err error
		var ectx any = u // with TLS, the loop-native connection around u
		if conn, err = d.DialContext(ctx, "tcp", u.addr); err == nil && wrap {
			conn, ectx, err = s.wrapDialed(ctx, conn, u, u.addr, u.st.cfg.ServerName)
		}
		if err == nil {
			err = s.enroll(lp.el, conn, ectx)
		}
		if err != nil {
			lp.exec(func(context.Context) error { u.dialFailed(err); return nil })
		}
	}()
}

func (u *upstream) dialFailed(err error) {
	lp := u.lp
	lp.clock()
	u.state = upIdle
	if u.retiring {
		return
	}
	u.st.setError(err.Error())
	u.st.m.dialFailures.Inc()
	u.report(balancer.ConnectFailed)
	u.scheduleRedial()
	lp.s.log.Debug("cannot connect to analyzer", "analyzer", u.name, "addr", u.addr, "loop", lp.idx, "err", err, "retry_in", time.Duration(u.redialAt-lp.now).Round(time.Millisecond))
}

func (u *upstream) scheduleRedial() {
	conf := u.lp.conf
	if u.backoff == 0 {
		u.backoff = conf.RedialMin
	} else {
		u.backoff = min(2*u.backoff, conf.RedialMax)
	}
	// Full jitter over the upper half: loops and instances do not redial
	// in lock step.
	d := u.backoff/2 + rand.N(u.backoff/2+1)
	u.redialAt = u.lp.now + int64(d)
}

func (u *upstream) onOpen(c gnet.Conn) ([]byte, gnet.Action) {
	lp := u.lp
	lp.clock()
	u.c = c
	u.state = upHandshake
	u.openedAt = lp.now
	u.misses = 0
	u.closing = ""
	u.sess.Reset(&lp.upCfg, u)
	if u.retiring {
		return nil, gnet.Close
	}
	return u.sess.AppendHello(nil), gnet.None
}

// onClose hands every packet the connection held to re-dispatch and
// schedules a redial.
func (u *upstream) onClose(err error) {
	lp := u.lp
	lp.clock()
	wasReady := u.state == upReady
	draining := u.sess.Draining()
	u.c = nil
	u.state = upIdle
	u.late, u.latency = false, 0
	clear(u.iov)
	u.iov = u.iov[:0]
	n := 0
	u.sess.TakeUnresolved(func(r *record) { lp.retry(r); n++ })
	u.sess.Close()
	for u.backlog.len() > 0 {
		lp.toRedo(u.backlog.pop())
		n++
	}
	u.publishInflight()
	if err != nil {
		u.st.setError(err.Error())
	}
	if wasReady {
		u.st.ready.Add(-1)
		u.st.m.lost.Inc()
		lvl, msg, why := u.closeReason(err, draining, n)
		lp.s.log.Log(lp.s.ctx, lvl, msg, "analyzer", u.name, "addr", u.addr, "loop", lp.idx, "reason", why, "redispatching", n)
	}
	if (!lp.s.draining.Load() && !draining) || n > 0 {
		u.report(balancer.WriteError)
	}
	if !u.retiring {
		u.scheduleRedial()
	}
	// Re-dispatch now, not at the next tick: packets should not wait.
	lp.flush()
}

// tick runs heartbeats, ack timeouts and redials.
func (u *upstream) tick(now int64) {
	lp := u.lp
	conf := lp.conf
	switch u.state {
	case upIdle:
		if !u.retiring && now >= u.redialAt && lp.s.ctx.Err() == nil && lp.s.set.AllowProbeGen(u.id, u.gen) {
			u.dial()
		}
	case upHandshake:
		if now-u.openedAt > int64(conf.DialTimeout+conf.HeartbeatTimeout) {
			u.closeNow(balancer.ConnectFailed, "no WELCOME from analyzer in time")
		}
	case upReady:
		// A PING goes out every interval whether or not the last was
		// answered, so a hung analyzer is down after (Fall-1)×interval +
		// timeout; a late PONG behind other frames is not a miss (the
		// session tells).
		if missed := u.sess.Missed(now, int64(conf.HeartbeatTimeout)); missed > 0 {
			u.misses += missed
			u.st.m.heartbeatsMissed.Add(missed)
			for i := 0; i < missed; i++ {
				u.report(balancer.HeartbeatMissed)
			}
			if u.misses >= lp.s.set.Config().Fall {
				u.closeNow(balancer.HeartbeatMissed, fmt.Sprintf("%d heartbeats missed in a row", u.misses))
				return
			}
		}
		u.checkLate(now)
		if now-u.sess.LastPing() >= int64(conf.HeartbeatInterval) && u.sess.AppendPing(lp.preciseNow()) {
			lp.markUp(u)
		}
		if r, ok := u.sess.Oldest(); ok && now-r.sentAt > int64(conf.AckTimeout) {
			u.st.m.ackTimeouts.Inc()
			u.closeNow(balancer.AckTimeout, "packet not acknowledged within the ack timeout")
		}
	}
}

// closeNow closes the connection for why, reporting ev to the balancer
// (noEvent: nothing).
func (u *upstream) closeNow(ev balancer.Event, why string) {
	u.report(ev)
	if !u.retiring {
		u.st.setError(why)
		u.lp.s.log.Warn("closing analyzer connection", "analyzer", u.name, "addr", u.addr, "loop", u.lp.idx, "reason", why)
	}
	u.closing = why
	if u.c != nil && u.lp.el != nil {
		_ = u.lp.el.Close(socketOf(u.c))
	}
}

// closeReason says how to log the end of a ready connection closed with
// err (nil: closed by logdist; EOF: by the analyzer): a warning only when
// the analyzer went away unannounced or the connection broke. An analyzer
// that drains sends GOAWAY first, and logdist closes once nothing is left
// in flight (or the analyzer does); while logdist itself stops, or for an
// analyzer removed, a close is what is expected. n is how many packets it
// held, now dispatched again.
func (u *upstream) closeReason(err error, draining bool, n int) (slog.Level, string, string) {
	const closed = "analyzer connection closed"
	s := u.lp.s
	eof := errors.Is(err, io.EOF)
	stopping := s.ctx.Err() != nil || s.draining.Load()
	expected := slog.LevelDebug
	if n > 0 {
		expected = slog.LevelInfo // what it held goes elsewhere: worth a line
	}
	switch {
	case u.retiring:
		return slog.LevelDebug, closed, "analyzer removed"
	case draining && err == nil:
		return expected, closed, "drained after the analyzer's GOAWAY"
	case draining && eof:
		return expected, closed, "the analyzer closed it after its GOAWAY"
	case draining:
		return slog.LevelInfo, closed, "after the analyzer's GOAWAY: " + err.Error()
	case stopping && err == nil:
		return slog.LevelDebug, closed, "logdist is stopping"
	case stopping && eof:
		return expected, closed, "the analyzer closed it while logdist was stopping"
	case stopping:
		return slog.LevelInfo, closed, "while logdist was stopping: " + err.Error()
	case err == nil && u.closing != "":
		return slog.LevelDebug, closed, "closed by logdist: " + u.closing // the warning said why
	case err == nil:
		return slog.LevelInfo, closed, "closed by logdist"
	case eof:
		return slog.LevelWarn, "lost analyzer connection", "the analyzer closed it without GOAWAY (EOF)"
	}
	return slog.LevelWarn, "lost analyzer connection", err.Error()
}
