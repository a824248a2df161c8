package session

import (
	"time"

	"github.com/logdist/logdist/frame"
)

// Heartbeats: the client sends PINGs, the server answers PONG in order
// behind the DATA it read before; a PING is missed only when nothing at
// all came back in time (PROTOCOL.md 11.3).

// AppendPing queues a PING (nonce: the next number) sent at now, unless
// maxPingsOut PINGs already wait for their PONG. It reports whether it did.
func (c *Client[T]) AppendPing(now int64) bool {
	if c.state != cliReady || c.pingSent-c.pingDone >= maxPingsOut {
		return false
	}
	c.pingSent++
	c.pingTimes[c.pingSent%maxPingsOut] = now
	c.lastPing = now
	c.out = frame.AppendPing(c.out, c.pingSent)
	return true
}

// Missed judges the PINGs older than timeout at now and returns how many
// were missed: no PONG, and no frame at all received since the PING was
// sent. A PING whose PONG is late behind other frames (ACKs from a busy
// server, which answers PINGs in order behind the DATA it processes) is
// not missed: the server is talking.
func (c *Client[T]) Missed(now, timeout int64) int {
	missed := 0
	for c.pingDone < c.pingSent && now-c.pingTimes[(c.pingDone+1)%maxPingsOut] > timeout {
		c.pingDone++
		if c.lastRx < c.pingTimes[c.pingDone%maxPingsOut] {
			missed++
		}
	}
	return missed
}

// PingsOut returns how many PINGs wait for their PONG.
func (c *Client[T]) PingsOut() int { return int(c.pingSent - c.pingDone) }

// LastPing returns when the last PING was queued (0: never).
func (c *Client[T]) LastPing() int64 { return c.lastPing }

// LastRx returns when the last frame was received (0: never).
func (c *Client[T]) LastRx() int64 { return c.lastRx }

// PongOf returns when the PING the last PONG answered was queued (the
// now given to AppendPing): a caller whose clock is finer than the one it
// feeds the session with measures the round trip from it.
func (c *Client[T]) PongOf() int64 { return c.pongOf }

// RTT returns the round trip of the last matched PING.
func (c *Client[T]) RTT() time.Duration { return time.Duration(c.rtt) }
