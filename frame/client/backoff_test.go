package client

import (
	"testing"
	"time"
)

// With the default configuration an agent whose server went away tries
// again within 2 s however long the outage (so it is back within 2 s of a
// restart), and the waits of a fleet at the cap spread over [1 s, 2 s]
// rather than falling together.
func TestDefaultBackoff(t *testing.T) {
	c := &Client{cfg: DefaultConfig()}
	lo, hi := time.Hour, time.Duration(0)
	for n := 0; n < 64; n++ {
		for range 200 {
			d := c.backoff(n)
			if d > 2*time.Second {
				t.Fatalf("attempt %d waits %v, more than 2 s", n, d)
			}
			if n >= 10 {
				lo, hi = min(lo, d), max(hi, d)
			}
		}
	}
	if lo < time.Second || hi < 1900*time.Millisecond || lo > 1100*time.Millisecond {
		t.Fatalf("waits at the cap span [%v, %v], want about [1 s, 2 s]", lo, hi)
	}
	if d := c.backoff(0); d > 100*time.Millisecond || d < 50*time.Millisecond {
		t.Fatalf("first retry after %v, want 50-100 ms", d)
	}
}
