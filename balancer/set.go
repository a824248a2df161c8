package balancer

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// AnalyzerConfig describes an analyzer to Add.
type AnalyzerConfig struct {
	// Name identifies the analyzer in the admin API, metrics and logs, and
	// seeds the Hash strategy: the same name keeps the same keys on every
	// distributor. Must be unique in the set and not empty.
	Name string
	// Addr is where the proxy dials it (host:port). The balancer only
	// carries it.
	Addr string
	// Weight is any non-negative number; shares are Weight over the sum of
	// the selectable analyzers' weights. 0 keeps it out of selection.
	Weight float64
	// Admin is the initial administrative state. Zero is Enabled.
	Admin AdminState
	// Ramp, when still running, moves the weight from Ramp.From to Weight
	// (a ramp restored after a restart); zero: Weight at once.
	Ramp Ramp
}

// Set is the set of analyzers: their configuration, health and the
// snapshot the cursors pick from. All methods are safe for concurrent use.
// Writers (Add, Report, SetWeight...) serialise on a mutex and publish a new
// snapshot when the selection changes; pickers only load it (see Cursor).
type Set struct {
	cfg Config
	log *slog.Logger

	snap    atomic.Pointer[snapshot]
	version atomic.Uint64
	// wake tells Run that a deadline earlier than the one it sleeps towards
	// was scheduled.
	wake chan struct{}

	mu       sync.Mutex
	byID     []*analyzer // index is the ID; nil: free. Length is IDLimit.
	byName   map[string]*analyzer
	gens     []uint64 // per ID: how many times it was assigned
	epoch    uint64
	deadline time.Time     // next slow-start step or breaker timer; zero: none
	changed  chan struct{} // closed and replaced on every version bump
	rng      rand.PCG      // breaker jitter
	seed     uint64
	cursors  map[*cursorStats]struct{}
	nextCur  uint64
	retired  []total // per ID: counters of closed cursors
	base     []total // per ID: counters when the ID was last assigned
}

// analyzer is one member of the set, guarded by Set.mu.
type analyzer struct {
	id     int
	gen    uint64
	name   string
	addr   string
	weight float64 // configured: where a ramp ends
	cur    float64 // in force now: weight, or where the ramp is
	ramp   Ramp
	admin  AdminState
	seed   uint64 // rendezvous seed, from name
	h      health
}

// selectable is the rule for entering the snapshot.
func (a *analyzer) selectable() bool {
	if a.cur <= 0 {
		return false
	}
	return a.admin == ForcedUp || a.admin == Enabled && a.h.state == Up
}

// New returns an empty set configured by cfg (see Config for zero fields).
func New(cfg Config) (*Set, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot create analyzer set: %w", err)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64() | 1
	}
	s := &Set{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "balancer"),
		wake:    make(chan struct{}, 1),
		byName:  make(map[string]*analyzer),
		gens:    make([]uint64, cfg.MaxAnalyzers),
		changed: make(chan struct{}),
		seed:    seed,
		cursors: make(map[*cursorStats]struct{}),
		retired: make([]total, cfg.MaxAnalyzers),
		base:    make([]total, cfg.MaxAnalyzers),
	}
	s.rng.Seed(seed, 0x6a09e667f3bcc908)
	s.snap.Store(emptySnapshot)
	return s, nil
}

// Config returns the set's configuration with defaults applied.
func (s *Set) Config() Config { return s.cfg }

// Add adds an analyzer and returns its ID: the lowest ID not in use, below
// Config.MaxAnalyzers. An ID is reused only after Remove; View reports a
// generation per ID (AnalyzerView.Gen) that tells the reuses apart. The
// analyzer starts down (it rises after Rise successes) with a closed
// breaker, so AllowProbe lets the proxy dial it at once.
func (s *Set) Add(ac AnalyzerConfig) (int, error) {
	if err := checkWeight(ac.Weight); err != nil {
		return -1, fmt.Errorf("cannot add analyzer %q: %w", ac.Name, err)
	}
	if ac.Name == "" || ac.Addr == "" {
		return -1, fmt.Errorf("cannot add analyzer %q at %q: %w: name and address are required",
			ac.Name, ac.Addr, ErrInvalidAnalyzer)
	}
	if err := checkWeight(ac.Ramp.From); err != nil {
		return -1, fmt.Errorf("cannot add analyzer %q: ramp: %w", ac.Name, err)
	}
	if ac.Admin > ForcedUp {
		return -1, fmt.Errorf("cannot add analyzer %q: %w: unknown admin state %d",
			ac.Name, ErrInvalidAnalyzer, ac.Admin)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byName[ac.Name]; ok {
		return -1, fmt.Errorf("cannot add analyzer %q: %w", ac.Name, ErrDuplicateName)
	}
	id := -1
	for i, a := range s.byID {
		if a == nil {
			id = i
			break
		}
	}
	if id < 0 {
		if len(s.byID) >= s.cfg.MaxAnalyzers {
			return -1, fmt.Errorf("cannot add analyzer %q: %w: %d in use; raise MaxAnalyzers",
				ac.Name, ErrTooManyAnalyzers, len(s.byID))
		}
		id = len(s.byID)
		s.byID = append(s.byID, nil)
	}
	now := s.cfg.Now()
	s.gens[id]++
	a := &analyzer{
		id: id, gen: s.gens[id], name: ac.Name, addr: ac.Addr,
		weight: ac.Weight, cur: ac.Weight, admin: ac.Admin, seed: nameSeed(ac.Name),
		h: health{since: now},
	}
	if ac.Ramp.active(now) {
		a.ramp = ac.Ramp
	}
	s.byID[id] = a
	s.byName[a.name] = a
	// Counters only grow: the new analyzer's start from what the ID holds.
	s.base[id] = s.sumLocked(id)
	s.log.Info("analyzer added",
		"analyzer", a.name, "addr", a.addr, "id", id, "weight", a.weight, "admin", a.admin.String())
	s.commit(now, true)
	return id, nil
}

// Remove takes the named analyzer out of the set; its ID becomes free for
// a later Add. Picks that started before Remove returned may still return
// it.
func (s *Set) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byName[name]
	if !ok {
		return fmt.Errorf("cannot remove analyzer %q: %w", name, ErrUnknownAnalyzer)
	}
	delete(s.byName, name)
	s.byID[a.id] = nil
	for len(s.byID) > 0 && s.byID[len(s.byID)-1] == nil {
		s.byID = s.byID[:len(s.byID)-1]
	}
	s.log.Info("analyzer removed", "analyzer", a.name, "addr", a.addr, "id", a.id)
	s.commit(s.cfg.Now(), true)
	return nil
}

// SetWeight changes the named analyzer's weight. Raising it from 0 puts the
// analyzer into service and so starts a slow start; changing a positive
// weight takes effect at once (a running slow start continues towards the
// new weight).
func (s *Set) SetWeight(name string, weight float64) error {
	if err := checkWeight(weight); err != nil {
		return fmt.Errorf("cannot set weight of analyzer %q: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byName[name]
	if !ok {
		return fmt.Errorf("cannot set weight of analyzer %q: %w", name, ErrUnknownAnalyzer)
	}
	if a.weight == weight && a.ramp == (Ramp{}) {
		return nil
	}
	s.log.Info("analyzer weight set",
		"analyzer", a.name, "addr", a.addr, "id", a.id, "from", a.cur, "to", weight)
	a.weight, a.ramp = weight, Ramp{}
	s.commit(s.cfg.Now(), true)
	return nil
}

// Drain stops selecting the named analyzer; it keeps being probed so that
// the acks of its packets in flight still arrive. Enable undoes it.
func (s *Set) Drain(name string) error { return s.setAdmin(name, Drained) }

// ForceDown stops selecting and probing the named analyzer, whatever its
// health. Enable undoes it.
func (s *Set) ForceDown(name string) error { return s.setAdmin(name, ForcedDown) }

// ForceUp selects the named analyzer (if its weight is positive) whatever
// its health. Enable undoes it.
func (s *Set) ForceUp(name string) error { return s.setAdmin(name, ForcedUp) }

// Enable returns the named analyzer to health-driven selection.
func (s *Set) Enable(name string) error { return s.setAdmin(name, Enabled) }

func (s *Set) setAdmin(name string, st AdminState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byName[name]
	if !ok {
		return fmt.Errorf("cannot set analyzer %q %s: %w", name, st, ErrUnknownAnalyzer)
	}
	if a.admin == st {
		return nil
	}
	s.log.Info("analyzer admin state set",
		"analyzer", a.name, "addr", a.addr, "id", a.id, "from", a.admin.String(), "to", st.String())
	a.admin = st
	s.commit(s.cfg.Now(), true)
	return nil
}

// Member names one analyzer of the set: its ID and generation (which
// tell it apart from a later analyzer given the same ID) and where it is.
type Member struct {
	ID   int
	Gen  uint64
	Name string
	Addr string
}

// Member returns the named analyzer's ID, generation and address.
func (s *Set) Member(name string) (Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byName[name]
	if !ok {
		return Member{}, false
	}
	return Member{ID: a.id, Gen: a.gen, Name: a.name, Addr: a.addr}, true
}

// Lookup returns the ID of the named analyzer.
func (s *Set) Lookup(name string) (id int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.byName[name]; ok {
		return a.id, true
	}
	return -1, false
}

// IDLimit is one more than the highest ID in use: per-ID arrays of this
// length cover every current analyzer. It never exceeds
// Config.MaxAnalyzers, so arrays of that length never need to grow.
func (s *Set) IDLimit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// Version counts the changes to the set: membership, weights, admin and
// health states, breakers and slow-start steps. A proxy can poll it
// (an atomic load) and call View when it moved.
func (s *Set) Version() uint64 { return s.version.Load() }

// Changed returns a channel that is closed at the next change after the
// call; call it again for the one after.
func (s *Set) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func checkWeight(w float64) error {
	if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
		return fmt.Errorf("%w: %v: want a finite number >= 0", ErrInvalidWeight, w)
	}
	return nil
}

func (s *Set) lookupID(id int) *analyzer {
	if id < 0 || id >= len(s.byID) {
		return nil
	}
	return s.byID[id]
}

// commit brings the set up to date at now, with s.mu held: it applies due
// breaker timers and slow-start steps, moves analyzers in and out of
// service, schedules the next deadline, publishes a new snapshot if the
// selection changed, and bumps the version if anything did (or changed is
// already true).
func (s *Set) commit(now time.Time, changed bool) {
	steps := s.cfg.SlowStartSteps
	var stepDur time.Duration
	if s.cfg.SlowStart > 0 {
		stepDur = s.cfg.SlowStart / time.Duration(steps)
	}
	var deadline time.Time
	schedule := func(t time.Time) {
		if deadline.IsZero() || t.Before(deadline) {
			deadline = t
		}
	}
	var ids []uint16
	var w []float64
	var seeds []uint64
	for _, a := range s.byID {
		if a == nil {
			continue
		}
		if s.advanceBreaker(a, now) {
			changed = true
		}
		if a.ramp != (Ramp{}) {
			var next time.Time
			a.cur, next = a.ramp.at(a.weight, now)
			if next.IsZero() {
				a.ramp = Ramp{}
			} else {
				schedule(next)
			}
		} else {
			a.cur = a.weight
		}
		h := &a.h
		switch h.breaker {
		case Open:
			schedule(h.openUntil)
		case HalfOpen:
			if h.probes > 0 {
				schedule(h.probeDeadline)
			}
		}
		sel := a.selectable()
		if sel != h.inService {
			h.inService, changed = sel, true
			if sel {
				h.rampStart, h.rampStep = now, 0
				if stepDur <= 0 || !h.seenDown {
					h.rampStep = steps // no ramp: see health.seenDown
				}
			} else {
				h.seenDown = true
			}
		}
		if !sel {
			continue
		}
		if h.rampStep < steps {
			// Steps fall on a grid shared by every analyzer, so that
			// analyzers ramping together share their rebuilds.
			grid := h.rampStart.Truncate(stepDur)
			if k := int(now.Sub(grid) / stepDur); k > h.rampStep {
				h.rampStep, changed = min(k, steps), true
			}
			if h.rampStep < steps {
				schedule(grid.Add(time.Duration(h.rampStep+1) * stepDur))
			}
		}
		ids = append(ids, uint16(a.id))
		w = append(w, a.cur*rampFraction(h.rampStep, steps))
		if s.cfg.Strategy == Hash {
			seeds = append(seeds, a.seed)
		}
	}
	if !deadline.IsZero() && (s.deadline.IsZero() || deadline.Before(s.deadline)) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	s.deadline = deadline
	if !s.snap.Load().sameSelection(ids, w) {
		s.epoch++
		s.snap.Store(buildSnapshot(s.cfg.Strategy, s.epoch, ids, w, seeds))
		changed = true
	}
	if changed {
		s.version.Add(1)
		close(s.changed)
		s.changed = make(chan struct{})
	}
}
