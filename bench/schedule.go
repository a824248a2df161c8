package bench

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Phase is a stretch of a load shape: the rate goes linearly from From to
// To packets/s over Duration.
type Phase struct {
	Duration time.Duration
	From, To float64
}

// Schedule is a load shape: phases played one after the other. It answers
// when the n-th packet of a run is due, which is how every connection
// paces itself without a central clock.
type Schedule struct {
	Phases []Phase
	// cum[i] is the number of packets due before phase i starts.
	cum []float64
}

// NewSchedule returns the schedule of phases.
func NewSchedule(phases ...Phase) *Schedule {
	s := &Schedule{Phases: phases}
	s.cum = make([]float64, len(phases)+1)
	for i, p := range phases {
		s.cum[i+1] = s.cum[i] + p.Duration.Seconds()*(p.From+p.To)/2
	}
	return s
}

// Constant returns a schedule of rate packets/s for d.
func Constant(rate float64, d time.Duration) *Schedule {
	return NewSchedule(Phase{Duration: d, From: rate, To: rate})
}

// The load shapes of the original design, at scale 1.
var profiles = map[string][]Phase{
	// 1,000 packets/s (of 10 messages) for 5 minutes.
	"baseline": {{5 * time.Minute, 1000, 1000}},
	// A ramp from 100 to 5,000 packets/s over 2 minutes.
	"spike": {{2 * time.Minute, 100, 5000}},
	// 2,000 packets/s for 30 minutes.
	"sustained": {{30 * time.Minute, 2000, 2000}},
	// Five minutes shaped like a real day compressed: a morning ramp, a
	// plateau, short bursts (deploys, incidents, cron storms), a decline
	// and a quiet tail. Mean about 1,260 packets/s, peak 5,000.
	"variable": {
		{60 * time.Second, 400, 1200},
		{30 * time.Second, 1200, 1200},
		{10 * time.Second, 4000, 4000},
		{40 * time.Second, 1500, 800},
		{20 * time.Second, 800, 800},
		{15 * time.Second, 5000, 5000},
		{45 * time.Second, 800, 2000},
		{40 * time.Second, 2000, 300},
		{40 * time.Second, 300, 300},
	},
}

// ProfileNames lists the named load profiles.
func ProfileNames() []string {
	names := make([]string, 0, len(profiles))
	for n := range profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Profile returns the named load profile with its rates multiplied and its
// durations divided by scale (scale 10: ten times the rate for a tenth of
// the time, the same number of packets).
func Profile(name string, scale float64) (*Schedule, error) {
	ph, ok := profiles[name]
	if !ok {
		return nil, fmt.Errorf("unknown profile %q: want one of %s", name, strings.Join(ProfileNames(), ", "))
	}
	if !(scale > 0) || math.IsInf(scale, 0) {
		return nil, fmt.Errorf("scale %g must be a positive number", scale)
	}
	out := make([]Phase, len(ph))
	for i, p := range ph {
		out[i] = Phase{
			Duration: time.Duration(float64(p.Duration) / scale),
			From:     p.From * scale,
			To:       p.To * scale,
		}
	}
	return NewSchedule(out...), nil
}

func (s *Schedule) validate() error {
	if len(s.Phases) == 0 {
		return fmt.Errorf("empty load profile")
	}
	for _, p := range s.Phases {
		if p.Duration <= 0 || p.From < 0 || p.To < 0 || math.IsNaN(p.From+p.To) || math.IsInf(p.From+p.To, 0) {
			return fmt.Errorf("bad profile phase %+v: durations must be positive, rates finite and not negative", p)
		}
	}
	if len(s.cum) != len(s.Phases)+1 {
		return fmt.Errorf("schedule not built with NewSchedule")
	}
	return nil
}

// Duration returns the length of the schedule.
func (s *Schedule) Duration() time.Duration {
	var d time.Duration
	for _, p := range s.Phases {
		d += p.Duration
	}
	return d
}

// Packets returns the number of packets the schedule sends.
func (s *Schedule) Packets() float64 { return s.cum[len(s.cum)-1] }

// TimeOf returns when, counted from the start, packet n (0-based) is due:
// the time at which the integral of the rate reaches n. ok is false if the
// schedule ends first.
func (s *Schedule) TimeOf(n float64) (d time.Duration, ok bool) {
	if n >= s.Packets() {
		return 0, false
	}
	i := sort.Search(len(s.Phases), func(i int) bool { return s.cum[i+1] > n })
	var off time.Duration
	for _, p := range s.Phases[:i] {
		off += p.Duration
	}
	p := s.Phases[i]
	c := n - s.cum[i] // packets into this phase
	T := p.Duration.Seconds()
	// count(t) = From·t + (To-From)·t²/(2T); solve count(t) = c in the
	// form that stays exact when the slope is 0 or negative.
	k := (p.To - p.From) / (2 * T)
	disc := p.From*p.From + 4*k*c
	if disc < 0 {
		disc = 0
	}
	den := p.From + math.Sqrt(disc)
	var t float64
	if den > 0 {
		t = 2 * c / den
	}
	t = min(t, T)
	return off + time.Duration(t*float64(time.Second)), true
}

// RateAt returns the scheduled rate in packets/s at time d from the start
// (0 past the end).
func (s *Schedule) RateAt(d time.Duration) float64 {
	for _, p := range s.Phases {
		if d < p.Duration {
			return p.From + (p.To-p.From)*d.Seconds()/p.Duration.Seconds()
		}
		d -= p.Duration
	}
	return 0
}
