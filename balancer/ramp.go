package balancer

import (
	"fmt"
	"time"
)

// Ramp moves an analyzer's weight in steps from From to its configured
// weight, between Start and Start+Over: a canary goes from 0.01 to 1 over
// ten minutes. Times are absolute, so a ramp restored after a restart
// (AnalyzerConfig.Ramp) carries on where it was, and one whose end has
// passed is simply the configured weight. The zero Ramp is none.
type Ramp struct {
	From  float64
	Start time.Time
	Over  time.Duration
}

// Steps a ramp takes: 1% of the way each, or fewer so that no step is
// shorter than minRampStep (each step rebuilds the snapshot).
const (
	rampSteps   = 100
	minRampStep = 100 * time.Millisecond
)

// active reports whether the ramp is still moving at now.
func (r Ramp) active(now time.Time) bool {
	return r.Over > 0 && now.Before(r.Start.Add(r.Over))
}

// at returns the weight in force at now on the way to weight, and when the
// next step falls (zero: the ramp is over).
func (r Ramp) at(weight float64, now time.Time) (float64, time.Time) {
	if !r.active(now) {
		return weight, time.Time{}
	}
	if now.Before(r.Start) {
		return r.From, r.Start
	}
	n := max(min(rampSteps, int(r.Over/minRampStep)), 1)
	step := r.Over / time.Duration(n)
	k := int(now.Sub(r.Start) / step)
	if k >= n {
		return weight, time.Time{}
	}
	return r.From + (weight-r.From)*float64(k)/float64(n), r.Start.Add(time.Duration(k+1) * step)
}

// SetWeightRamp moves the named analyzer's weight to weight along r. A
// ramp with a zero Start starts now from the weight in force (midway
// through a previous ramp, where that one got to): pass Ramp{Over: d}. A
// ramp whose end has passed, or Over <= 0, is SetWeight. It returns the
// ramp now under way (zero: none), which a caller that keeps the
// configuration records. A later SetWeight or SetWeightRamp replaces it.
func (s *Set) SetWeightRamp(name string, weight float64, r Ramp) (Ramp, error) {
	if err := checkWeight(weight); err != nil {
		return Ramp{}, fmt.Errorf("cannot set weight of analyzer %q: %w", name, err)
	}
	if err := checkWeight(r.From); err != nil || r.Over < 0 {
		return Ramp{}, fmt.Errorf("cannot ramp weight of analyzer %q: %w: from %v over %v", name, ErrInvalidWeight, r.From, r.Over)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byName[name]
	if !ok {
		return Ramp{}, fmt.Errorf("cannot set weight of analyzer %q: %w", name, ErrUnknownAnalyzer)
	}
	now := s.cfg.Now()
	if r.Start.IsZero() {
		r.From, _ = a.ramp.at(a.weight, now) // where a ramp under way got to
		r.Start = now
	}
	if !r.active(now) || r.From == weight {
		r = Ramp{}
	}
	a.weight, a.ramp = weight, r
	s.log.Info("analyzer weight set",
		"analyzer", a.name, "addr", a.addr, "id", a.id, "from", a.cur, "to", weight, "over", r.Over)
	s.commit(now, true)
	return r, nil
}
