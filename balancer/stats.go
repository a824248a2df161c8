package balancer

import (
	"math"
	"time"
)

// View is a copy of the set's state for the admin API and metrics. The
// configuration and health fields are one consistent state (taken under the
// set's mutex); the counters are summed from the cursors right after, each
// read atomically, so a pick accounted meanwhile may or may not be in them.
type View struct {
	// Version is Set.Version when the view was taken.
	Version uint64
	// Epoch counts the snapshots published so far.
	Epoch uint64
	// Strategy is the set's picker.
	Strategy Strategy
	// Exact tells, for SWRR, whether the sequence's shares are exactly the
	// effective weights' shares; when false each is within 1/65536 of it.
	Exact bool
	// Selectable is how many analyzers the picker chooses from.
	Selectable int
	// Packets, Messages and Bytes are the totals over Analyzers.
	Packets, Messages, Bytes uint64
	// MaxShareError is the largest |ShareError| over Analyzers.
	MaxShareError float64
	// Analyzers are the members of the set by ascending ID.
	Analyzers []AnalyzerView
}

// AnalyzerView is one analyzer in a View.
type AnalyzerView struct {
	// ID indexes per-analyzer arrays; Gen counts how many analyzers have had
	// this ID, so that (ID, Gen) names one analyzer for the life of the set.
	ID  int
	Gen uint64
	// Name and Addr are as added.
	Name, Addr string
	// Weight is the configured weight; EffectiveWeight the one the picker
	// uses (Weight reduced during slow start; 0 when not selectable).
	Weight, EffectiveWeight float64
	// Admin, Health and Breaker are the analyzer's states.
	Admin   AdminState
	Health  HealthState
	Breaker BreakerState
	// Selectable tells whether the picker may choose it now.
	Selectable bool
	// SlowStart tells whether its effective weight is still ramping up.
	SlowStart bool
	// Ramp is the weight ramp under way (SetWeightRamp), zero when none:
	// the weight in force moves from Ramp.From to Weight until
	// Ramp.Start+Ramp.Over.
	Ramp Ramp
	// Successes and Failures are the consecutive counts towards Rise and
	// Fall.
	Successes, Failures int
	// HealthSince is when Health last changed (or the analyzer was added).
	HealthSince time.Time
	// Events counts the events reported for it, by kind (JSON keys are the
	// event names).
	Events map[Event]uint64
	// Packets, Messages and Bytes are what the cursors accounted to it
	// since it was added.
	Packets, Messages, Bytes uint64
	// Share is its share of the view's Packets. ConfiguredShare is its
	// weight in force (Weight, or where a Ramp is) over the sum of the
	// selectable analyzers' (0 when not selectable); TargetShare is what the picker aims at now (slow start
	// and quantisation applied). ShareError is Share - ConfiguredShare.
	Share, ConfiguredShare, TargetShare, ShareError float64
}

// total is a plain copy of counters.
type total struct {
	packets, messages, bytes uint64
}

func (t *total) add(p, m, b uint64) {
	t.packets += p
	t.messages += m
	t.bytes += b
}

// sumLocked returns everything ever accounted to ID id, closed cursors
// included. s.mu must be held (it guards the cursor registry).
func (s *Set) sumLocked(id int) total {
	t := s.retired[id]
	for st := range s.cursors {
		k := &st.c[id]
		t.add(k.packets.Load(), k.messages.Load(), k.bytes.Load())
	}
	return t
}

// View returns a copy of the set's state and counters. Like Tick, it
// first applies whatever timer is due, so it never shows a stale breaker or
// slow-start step.
func (s *Set) View() View {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.cfg.Now(); s.due(now) {
		s.commit(now, false)
	}
	sn := s.snap.Load()
	v := View{
		Version:    s.version.Load(),
		Epoch:      sn.epoch,
		Strategy:   s.cfg.Strategy,
		Exact:      sn.exact || len(sn.ids) == 0 || s.cfg.Strategy != SWRR,
		Selectable: len(sn.ids),
		Analyzers:  make([]AnalyzerView, 0, len(s.byName)),
	}
	pos := make(map[uint16]int, len(sn.ids))
	for i, id := range sn.ids {
		pos[id] = i
	}
	// Shares relative to the largest weight: no sum overflows.
	var top, selWeight float64
	for _, a := range s.byID {
		if a != nil && a.h.inService {
			top = max(top, a.cur)
		}
	}
	for _, a := range s.byID {
		if a != nil && a.h.inService {
			selWeight += a.cur / top
		}
	}
	for _, a := range s.byID {
		if a == nil {
			continue
		}
		t := s.sumLocked(a.id)
		b := s.base[a.id]
		av := AnalyzerView{
			ID: a.id, Gen: a.gen, Name: a.name, Addr: a.addr,
			Weight: a.weight, Ramp: a.ramp, Admin: a.admin, Health: a.h.state, Breaker: a.h.breaker,
			Successes: a.h.succ, Failures: a.h.fail, HealthSince: a.h.since,
			Events:   make(map[Event]uint64, numEvents),
			Packets:  t.packets - b.packets,
			Messages: t.messages - b.messages,
			Bytes:    t.bytes - b.bytes,
		}
		for ev, n := range a.h.events {
			av.Events[Event(ev)] = n
		}
		if i, ok := pos[uint16(a.id)]; ok {
			av.Selectable = true
			av.EffectiveWeight = sn.weights[i]
			av.SlowStart = a.h.rampStep < s.cfg.SlowStartSteps
			av.ConfiguredShare = a.cur / top / selWeight
			av.TargetShare = sn.targetShare(i)
		}
		v.Analyzers = append(v.Analyzers, av)
	}
	v.computeShares()
	return v
}

// Since returns v with every analyzer's counters reduced by what prev
// (an earlier View of the same set) had counted, and the shares
// recomputed: the distribution over the interval between the two views.
// An analyzer not in prev under the same ID and Gen keeps its counters.
func (v View) Since(prev View) View {
	old := make(map[int]AnalyzerView, len(prev.Analyzers))
	for _, a := range prev.Analyzers {
		old[a.ID] = a
	}
	out := v
	out.Analyzers = append([]AnalyzerView(nil), v.Analyzers...)
	for i := range out.Analyzers {
		a := &out.Analyzers[i]
		if p, ok := old[a.ID]; ok && p.Gen == a.Gen {
			a.Packets -= min(p.Packets, a.Packets)
			a.Messages -= min(p.Messages, a.Messages)
			a.Bytes -= min(p.Bytes, a.Bytes)
		}
	}
	out.computeShares()
	return out
}

// computeShares fills the totals, the actual shares and the share errors.
func (v *View) computeShares() {
	v.Packets, v.Messages, v.Bytes, v.MaxShareError = 0, 0, 0, 0
	for _, a := range v.Analyzers {
		v.Packets += a.Packets
		v.Messages += a.Messages
		v.Bytes += a.Bytes
	}
	for i := range v.Analyzers {
		a := &v.Analyzers[i]
		a.Share = 0
		if v.Packets > 0 {
			a.Share = float64(a.Packets) / float64(v.Packets)
		}
		a.ShareError = a.Share - a.ConfiguredShare
		v.MaxShareError = math.Max(v.MaxShareError, math.Abs(a.ShareError))
	}
}
