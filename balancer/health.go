package balancer

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Event is what the proxy observed about an analyzer. Connected and
// HeartbeatOK are successes; the others are failures.
type Event uint8

const (
	// Connected: a connection to the analyzer was established.
	Connected Event = iota
	// ConnectFailed: a dial failed or timed out.
	ConnectFailed
	// HeartbeatOK: a PONG answered a PING in time.
	HeartbeatOK
	// HeartbeatMissed: a PING went unanswered.
	HeartbeatMissed
	// WriteError: writing to the analyzer's connection failed.
	WriteError
	// AckTimeout: a packet forwarded to the analyzer was not acked in time.
	AckTimeout

	numEvents
)

var eventNames = [numEvents]string{
	Connected: "connected", ConnectFailed: "connect-failed",
	HeartbeatOK: "heartbeat-ok", HeartbeatMissed: "heartbeat-missed",
	WriteError: "write-error", AckTimeout: "ack-timeout",
}

func (e Event) String() string {
	if e < numEvents {
		return eventNames[e]
	}
	return "unknown-event"
}

// Success reports whether e counts towards Rise (true) or Fall (false).
func (e Event) Success() bool { return e == Connected || e == HeartbeatOK }

// HealthState is what the events say about an analyzer.
type HealthState uint8

const (
	// Down: not selectable. Every analyzer starts down and rises after Rise
	// consecutive successes, so nothing is picked before it is reachable.
	Down HealthState = iota
	// Up: selectable (unless drained, forced down or weight 0).
	Up
)

func (h HealthState) String() string {
	if h == Up {
		return "up"
	}
	return "down"
}

// BreakerState is the state of an analyzer's circuit breaker, which
// decides whether the proxy may dial or probe it (AllowProbe).
type BreakerState uint8

const (
	// Closed: probes allowed. Fall consecutive failures open it.
	Closed BreakerState = iota
	// Open: no probes until the backoff (doubling per trip, capped,
	// jittered) has passed; then it is half-open. Events reported while
	// open come from connections made before it tripped and are ignored.
	Open
	// HalfOpen: HalfOpenProbes probes are granted; a success closes the
	// breaker, a failure (or no outcome within ProbeTimeout) opens it again.
	HalfOpen
)

func (b BreakerState) String() string {
	switch b {
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "closed"
}

// AdminState is what the operator said about an analyzer.
type AdminState uint8

const (
	// Enabled: selectable when up and weight > 0.
	Enabled AdminState = iota
	// Drained: never selected; still probed and health-checked, so its
	// connections stay up to collect the acks of packets in flight.
	Drained
	// ForcedDown: never selected and never probed (AllowProbe is false).
	ForcedDown
	// ForcedUp: selected whenever weight > 0, whatever its health: for when
	// health checks are wrong and the operator knows better.
	ForcedUp
)

func (a AdminState) String() string {
	switch a {
	case Drained:
		return "drained"
	case ForcedDown:
		return "forced-down"
	case ForcedUp:
		return "forced-up"
	}
	return "enabled"
}

// health is the per-analyzer health, breaker and slow-start state, guarded
// by Set.mu.
type health struct {
	state      HealthState
	succ, fail int // consecutive successes; the most consecutive failures of one source
	// fails counts the consecutive failures each source (a proxy event
	// loop, with its own connection) reported: an analyzer is down when
	// one source saw Fall in a row, as that source's connection closes
	// then. Summed over sources, two loops took it down after 2+1 misses
	// while no connection had closed.
	fails []int
	since time.Time

	breaker       BreakerState
	trips         int       // trips since the analyzer was last up
	openUntil     time.Time // Open: when it turns half-open
	probes        int       // HalfOpen: probes granted
	probeDeadline time.Time // HalfOpen: when granted probes count as failed

	// inService is whether the analyzer was selectable at the last commit;
	// rampStart and rampStep drive slow start (rampStep == steps: done).
	inService bool
	rampStart time.Time
	rampStep  int
	// seenDown is set when the analyzer leaves service (down, drained,
	// forced down). Slow start is for an analyzer coming back: its first
	// entry into service (when logdist starts, or after it is added) is at
	// full weight, however many connection attempts failed before it, as
	// HAProxy does not apply slowstart at startup. When analyzers and
	// logdist start together, some answer logdist's first dial and some
	// do not; ramping only the late ones would hand the first ones most of
	// the load for the whole ramp, and ramping all together would change
	// nothing but rebuild the snapshot at every step.
	seenDown bool

	events [numEvents]uint64
}

// Report feeds one event about analyzer id into its health state machine.
// It is safe from any goroutine and takes the set's mutex briefly: an event
// that changes nothing (a heartbeat from an analyzer that is up) costs a
// lock and a few comparisons. An event that changes what is selectable
// rebuilds the snapshot before Report returns, so that every pick that
// starts afterwards sees the change; that costs microseconds for a few
// analyzers with decimal weights and up to a few milliseconds for hundreds
// with weights that need the full 65536-slot sequence (BenchmarkBuildSnapshot).
// Events for an ID that is not in use (an analyzer removed while its
// connections were closing) are dropped.
func (s *Set) Report(id int, ev Event) { s.ReportFrom(id, 0, 0, ev) }

// ReportGen is Report for the analyzer with ID id and generation gen
// (AnalyzerView.Gen): an event about an analyzer that was removed, its ID
// since given to another, is dropped. gen 0 matches any generation.
func (s *Set) ReportGen(id int, gen uint64, ev Event) { s.ReportFrom(id, gen, 0, ev) }

// ReportFrom is ReportGen from source src (0 to MaxSources-1): a proxy
// event loop and its connection to the analyzer. Failures count per
// source: Fall of them in a row from one source take the analyzer down,
// whatever the others report.
func (s *Set) ReportFrom(id int, gen uint64, src int, ev Event) {
	if src < 0 || src >= MaxSources {
		panic("BUG: balancer: report from a source out of range")
	}
	if ev >= numEvents {
		panic("BUG: balancer: Report with unknown event")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupID(id)
	if a == nil || gen != 0 && a.gen != gen {
		return
	}
	now := s.cfg.Now()
	a.h.events[ev]++
	changed := s.advanceBreaker(a, now)
	if s.apply(a, src, ev, now) {
		changed = true
	}
	if changed || s.due(now) {
		s.commit(now, changed)
	}
}

// apply runs the rise/fall and breaker rules for one event and reports
// whether anything changed.
func (s *Set) apply(a *analyzer, src int, ev Event, now time.Time) bool {
	h := &a.h
	switch h.breaker {
	case Open:
		return false
	case HalfOpen:
		if !ev.Success() {
			s.trip(a, now, "half-open probe failed: "+ev.String())
			return true
		}
		h.breaker = Closed
		h.probes = 0
		s.log.Info("analyzer breaker closed",
			"analyzer", a.name, "addr", a.addr, "id", a.id, "event", ev.String())
		h.clearFails()
		h.succ = 0
		s.success(a, src, ev, now)
		return true
	}
	if ev.Success() {
		return s.success(a, src, ev, now)
	}
	h.succ = 0
	if n := src + 1; len(h.fails) < n {
		h.fails = append(h.fails, make([]int, n-len(h.fails))...)
	}
	h.fails[src]++
	h.fail = max(h.fail, h.fails[src])
	if h.fails[src] < s.cfg.Fall {
		return false
	}
	if h.state == Up {
		h.state, h.since = Down, now
		s.log.Warn("analyzer down",
			"analyzer", a.name, "addr", a.addr, "id", a.id, "event", ev.String(), "fall", s.cfg.Fall)
	}
	s.trip(a, now, ev.String())
	return true
}

func (s *Set) success(a *analyzer, src int, ev Event, now time.Time) bool {
	h := &a.h
	if src < len(h.fails) {
		h.fails[src] = 0
		h.fail = slices.Max(h.fails)
	}
	h.succ++
	if h.state == Up || h.succ < s.cfg.Rise {
		return false
	}
	h.state, h.since = Up, now
	h.trips = 0
	s.log.Info("analyzer up",
		"analyzer", a.name, "addr", a.addr, "id", a.id, "event", ev.String(), "rise", s.cfg.Rise)
	return true
}

func (h *health) clearFails() {
	clear(h.fails)
	h.fail = 0
}

// MaxSources bounds the sources of ReportFrom (a proxy's event loops).
const MaxSources = 1024

// trip opens a's breaker for the next backoff: BreakerBackoff doubled per
// trip since the analyzer was last up, capped at BreakerMaxBackoff, and
// drawn from [d/2, d) so that distributors spread their redials.
func (s *Set) trip(a *analyzer, now time.Time, reason string) {
	h := &a.h
	h.trips++
	d := s.cfg.BreakerBackoff
	for i := 1; i < h.trips && d < s.cfg.BreakerMaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BreakerMaxBackoff)
	wait := d/2 + time.Duration(s.rng.Uint64()%uint64(d-d/2))
	h.breaker, h.openUntil = Open, now.Add(wait)
	h.succ, h.probes = 0, 0
	h.clearFails()
	s.log.Warn("analyzer breaker open",
		"analyzer", a.name, "addr", a.addr, "id", a.id, "reason", reason,
		"trips", h.trips, "retry_in", wait)
}

// advanceBreaker applies the timed breaker transitions due at now and
// reports whether any happened.
func (s *Set) advanceBreaker(a *analyzer, now time.Time) bool {
	h := &a.h
	switch {
	case h.breaker == Open && !now.Before(h.openUntil):
		h.breaker, h.probes = HalfOpen, 0
		s.log.Info("analyzer breaker half-open",
			"analyzer", a.name, "addr", a.addr, "id", a.id)
		return true
	case h.breaker == HalfOpen && h.probes > 0 && !now.Before(h.probeDeadline):
		s.trip(a, now, "half-open probe timed out")
		return true
	}
	return false
}

// AllowProbe reports whether the proxy may dial or probe analyzer id now:
// true while its breaker is closed, false while open, and for the first
// HalfOpenProbes calls once half-open. A granted probe's outcome must be
// reported (Connected, HeartbeatOK, ConnectFailed...); without one within
// ProbeTimeout it counts as failed. Always false for a forced-down or
// unknown analyzer. Not for the per-packet path: it takes the mutex.
func (s *Set) AllowProbe(id int) bool { return s.AllowProbeGen(id, 0) }

// AllowProbeGen is AllowProbe for the analyzer with ID id and generation
// gen (0: any); false for one that was removed.
func (s *Set) AllowProbeGen(id int, gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupID(id)
	if a == nil || a.admin == ForcedDown || gen != 0 && a.gen != gen {
		return false
	}
	now := s.cfg.Now()
	changed := s.advanceBreaker(a, now)
	allow := false
	switch a.h.breaker {
	case Closed:
		allow = true
	case HalfOpen:
		if a.h.probes < s.cfg.HalfOpenProbes {
			if a.h.probes == 0 {
				a.h.probeDeadline = now.Add(s.cfg.ProbeTimeout)
			}
			a.h.probes++
			allow = true
		}
	}
	if changed || s.due(now) {
		s.commit(now, changed)
	}
	return allow
}

// RetryDown makes every enabled analyzer whose breaker is open eligible
// for a probe at once, and returns how many. For the end of a total
// outage: when one analyzer comes back the others may well be back too (a
// partition healed, a rack powered up), and waiting out their backoffs,
// up to BreakerMaxBackoff, would hand the first one everything.
func (s *Set) RetryDown() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	n := 0
	for _, a := range s.byID {
		if a != nil && a.admin == Enabled && a.weight > 0 && a.h.breaker == Open {
			a.h.openUntil = now
			n++
		}
	}
	return n
}

// Rising reports whether analyzer id is on its way up: enabled with a
// weight, not selectable yet, and its breaker closed (connected, counting
// successes towards Rise) or half-open (being probed).
func (s *Set) Rising(id int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupID(id)
	if a == nil {
		return false
	}
	now := s.cfg.Now()
	if s.advanceBreaker(a, now) { // RetryDown's breakers turn half-open here
		s.commit(now, true)
	}
	return a.admin == Enabled && a.weight > 0 && a.h.state == Down && a.h.breaker != Open
}

// Tick applies what is due by the set's clock: slow-start steps, breakers
// turning half-open, probes timing out. It returns when it next has
// something to do (zero: nothing scheduled). Report and AllowProbe also do
// it, so Tick only makes the timing exact; Run calls it on time.
func (s *Set) Tick() (next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commit(s.cfg.Now(), false)
	return s.deadline
}

// Run calls Tick whenever something is due, until ctx is done. It is one
// way to drive slow start and breakers on time; a proxy with its own timer
// can call Tick instead. It returns ctx.Err().
func (s *Set) Run(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := s.Tick()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(s.cfg.Now()), time.Millisecond)
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-t.C:
		}
	}
}

// due reports whether a scheduled slow-start step or breaker transition is
// due at now.
func (s *Set) due(now time.Time) bool {
	return !s.deadline.IsZero() && !now.Before(s.deadline)
}

// rampFraction is the share of its weight an analyzer gets at slow-start
// step k of steps: linear from 1/steps at k = 0 to exactly 1 at k = steps.
func rampFraction(k, steps int) float64 {
	if k >= steps {
		return 1
	}
	return float64(steps+(steps-1)*k) / float64(steps*steps)
}

// MarshalText makes the states read as words in JSON (admin API).
func (e Event) MarshalText() ([]byte, error)        { return []byte(e.String()), nil }
func (h HealthState) MarshalText() ([]byte, error)  { return []byte(h.String()), nil }
func (b BreakerState) MarshalText() ([]byte, error) { return []byte(b.String()), nil }
func (a AdminState) MarshalText() ([]byte, error)   { return []byte(a.String()), nil }

// ParseAdminState reads an AdminState from its name (String): enabled,
// drained, forced-down or forced-up.
func ParseAdminState(s string) (AdminState, error) {
	for a := Enabled; a <= ForcedUp; a++ {
		if a.String() == s {
			return a, nil
		}
	}
	return Enabled, fmt.Errorf("unknown analyzer state %q: want enabled, drained, forced-down or forced-up", s)
}

// UnmarshalText reads the name MarshalText writes.
func (a *AdminState) UnmarshalText(b []byte) error {
	v, err := ParseAdminState(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}
