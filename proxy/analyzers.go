package proxy

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logdist/logdist/balancer"
)

// The live analyzer set. The balancer decides who gets each packet; the
// registry says which analyzers exist, so that every loop keeps one
// connection to each (reconcile.go). Both change only under Server.ctl,
// balancer first: a removed analyzer is no longer picked before any loop
// learns it is gone, and a loop that picks an analyzer it does not know
// yet looks again at the registry.

// registry is one immutable list of the analyzers, by balancer ID. A new
// one is published whole (Server.reg) on every change of membership.
type registry struct {
	byID []*analyzerState // nil: ID free
}

func (r *registry) get(id int) *analyzerState {
	if r == nil || id < 0 || id >= len(r.byID) {
		return nil
	}
	return r.byID[id]
}

// with returns a copy of r with st at its ID (nil removes what is there).
func (r *registry) with(id int, st *analyzerState) *registry {
	n := max(len(r.byID), id+1)
	nr := &registry{byID: make([]*analyzerState, n)}
	copy(nr.byID, r.byID)
	nr.byID[id] = st
	for len(nr.byID) > 0 && nr.byID[len(nr.byID)-1] == nil {
		nr.byID = nr.byID[:len(nr.byID)-1]
	}
	return nr
}

// analyzerState is what every loop's connection to one analyzer shares:
// its identity, its metrics, how many loops reach it and its last error.
// It lives as long as the analyzer is in the set (one per Add).
type analyzerState struct {
	cfg AnalyzerConfig
	id  int
	gen uint64
	m   *analyzerMetrics
	// ready counts the loops whose connection to it is ready; inflight
	// the packets sent to it and not yet answered, over every loop (each
	// upstream adds its change once per wake-up).
	ready    atomic.Int32
	inflight atomic.Int64
	// ackSamples packets of those sampled for ack latency were answered
	// ackNanos after they were sent, in total.
	ackSamples atomic.Uint64
	ackNanos   atomic.Int64

	mu        sync.Mutex
	lastErr   string
	lastErrAt time.Time
}

// setError records why a connection to the analyzer failed.
func (st *analyzerState) setError(msg string) {
	st.mu.Lock()
	st.lastErr, st.lastErrAt = msg, time.Now()
	st.mu.Unlock()
}

// clearError forgets the last error once a connection succeeded.
func (st *analyzerState) clearError() {
	st.mu.Lock()
	st.lastErr, st.lastErrAt = "", time.Time{}
	st.mu.Unlock()
}

func (st *analyzerState) lastError() (string, time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lastErr, st.lastErrAt
}

// AddAnalyzer adds an analyzer while traffic flows: every loop connects to
// it, and once its health rises it gets its weight's share. The name and
// the address must not be in use.
func (s *Server) AddAnalyzer(a AnalyzerConfig) error {
	return s.change("add "+a.Name, func(c *Config) error {
		c.Analyzers = append(c.Analyzers, a)
		return nil
	})
}

// RemoveAnalyzer takes an analyzer out while traffic flows. It is no
// longer picked from the moment RemoveAnalyzer returns; the packets it has
// in flight are settled where they are (each loop's connection stays until
// its analyzer has answered them, at most AckTimeout), and the rest are
// dispatched to the other analyzers: none is lost.
func (s *Server) RemoveAnalyzer(name string) error {
	return s.changeAnalyzer("remove", name, func(c *Config, i int) {
		c.Analyzers = append(c.Analyzers[:i], c.Analyzers[i+1:]...)
	})
}

// SetWeight changes an analyzer's weight; 0 stops picking it (a drain
// that keeps it in the set).
func (s *Server) SetWeight(name string, weight float64) error {
	return s.SetWeightRamp(name, weight, 0)
}

// SetWeightRamp moves an analyzer's weight to weight over the duration
// over, in steps (balancer.SetWeightRamp), from the weight in force now;
// over <= 0 is SetWeight. The configuration records the ramp with its
// start, so that a configuration restored later carries on from the same
// point in time.
func (s *Server) SetWeightRamp(name string, weight float64, over time.Duration) error {
	what := fmt.Sprintf("weight %v", weight)
	if over > 0 {
		what += fmt.Sprintf(" over %v", over)
	}
	return s.changeAnalyzer(what, name, func(c *Config, i int) {
		c.Analyzers[i].Weight = weight
		c.Analyzers[i].Ramp = balancer.Ramp{Over: max(over, 0)} // started by applyAnalyzers
	})
}

// SetAdmin sets an analyzer's administrative state: Drained (no new
// packets; what it has in flight is still answered), ForcedDown (no
// packets, no connection attempts), ForcedUp (picked whatever its
// health), or Enabled (health decides).
func (s *Server) SetAdmin(name string, state balancer.AdminState) error {
	return s.changeAnalyzer(state.String(), name, func(c *Config, i int) { c.Analyzers[i].Admin = state })
}

// Reconfigure makes cfg the running configuration: analyzers are added,
// removed (as RemoveAnalyzer does) and re-weighted to match, and the loops
// take every other setting at once, as one snapshot. A change to a
// setting only a restart can change is refused (ErrRestartRequired), as
// is an invalid cfg; either way nothing is applied. Logger and Metrics are
// kept from the running configuration.
func (s *Server) Reconfigure(cfg Config) error {
	return s.ReconfigureAs(cfg, 0, "reconfigure")
}

// ReconfigureAs is Reconfigure publishing the configuration as version
// (0: one more than the running one), with what saying why in the log: a
// caller that keeps its own numbered history (the admin API's versions)
// keeps the server's version equal to its own. The same configuration
// under another number changes nothing else.
func (s *Server) ReconfigureAs(cfg Config, version uint64, what string) error {
	return s.changeAs(version, what, func(c *Config) error {
		if err := restartChanges(c, &cfg); err != nil {
			return err
		}
		logger, mset := c.Logger, c.Metrics
		*c = cfg.clone()
		c.Logger, c.Metrics = logger, mset
		return nil
	})
}

// Config returns the running configuration.
func (s *Server) Config() Config { return s.conf.Load().Config.clone() }

// ConfigVersion returns the running configuration's version: 1 at start,
// one more for every change applied.
func (s *Server) ConfigVersion() uint64 { return s.conf.Load().version }

// ErrUnknownAnalyzer is returned for a change to an analyzer the running
// configuration does not have.
var ErrUnknownAnalyzer = errors.New("proxy: no such analyzer")

// changeAnalyzer applies edit to the named analyzer (its index in the
// configuration's list), as change does.
func (s *Server) changeAnalyzer(what, name string, edit func(c *Config, i int)) error {
	return s.change(what+" "+name, func(c *Config) error {
		i := c.analyzer(name)
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrUnknownAnalyzer, name)
		}
		edit(c, i)
		return nil
	})
}

func (c *Config) analyzer(name string) int {
	for i, a := range c.Analyzers {
		if a.Name == name {
			return i
		}
	}
	return -1
}

// change applies edit to a copy of the running configuration, checks the
// result, brings the analyzer set and the registry in line with it,
// publishes it as the next version and has every loop take it. Nothing is
// applied if edit or the check fails.
func (s *Server) change(what string, edit func(*Config) error) error {
	return s.changeAs(0, what, edit)
}

func (s *Server) changeAs(version uint64, what string, edit func(*Config) error) error {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	cur := s.conf.Load()
	next := cur.Config.clone()
	if err := edit(&next); err != nil {
		return err
	}
	if err := next.Validate(); err != nil {
		return err
	}
	s.applyAnalyzers(cur.Analyzers, next.Analyzers)
	s.warnIfNoTraffic(next.Analyzers)
	if version == 0 {
		version = cur.version + 1
	}
	conf := newSettings(next, version)
	s.conf.Store(conf)
	s.log.Info("configuration applied", "change", what, "version", conf.version)
	for _, lp := range s.snapshotLoops() {
		lp.exec(lp.reconfigureFn)
	}
	return nil
}

// applyAnalyzers brings the balancer and the registry from the analyzers
// in from to those in to: removals first (their IDs may be reused), then
// additions, then weight and admin changes. A changed address or TLS
// setting is a new analyzer: the old one drains, a new one connects.
// A ramp to start (zero Start) is started, and to records it as started.
// to has passed Validate, so the balancer cannot refuse a step.
func (s *Server) applyAnalyzers(from, to []AnalyzerConfig) {
	old := map[string]AnalyzerConfig{}
	for _, a := range from {
		old[a.Name] = a
	}
	for _, a := range from {
		if n, ok := findAnalyzer(to, a.Name); !ok || n.Addr != a.Addr || n.TLS != a.TLS || n.ServerName != a.ServerName {
			s.removeAnalyzer(a.Name)
		}
	}
	for i := range to {
		a := &to[i]
		o, ok := old[a.Name]
		switch {
		case !ok || o.Addr != a.Addr || o.TLS != a.TLS || o.ServerName != a.ServerName:
			if a.Ramp.Start.IsZero() {
				a.Ramp = balancer.Ramp{} // nothing to ramp from
			}
			s.addAnalyzer(*a)
		default:
			if o.Weight != a.Weight || o.Ramp != a.Ramp {
				r, err := s.set.SetWeightRamp(a.Name, a.Weight, a.Ramp)
				mustApply(err)
				a.Ramp = r
			}
			if o.Admin != a.Admin {
				mustApply(setAdmin(s.set, a.Name, a.Admin))
			}
		}
	}
}

// warnIfNoTraffic logs a warning when the configured analyzers give no
// analyzer any packet, whatever their health: every weight 0, or every
// analyzer with a weight drained or forced down.
func (s *Server) warnIfNoTraffic(as []AnalyzerConfig) {
	for _, a := range as {
		if a.Weight > 0 && a.Admin != balancer.Drained && a.Admin != balancer.ForcedDown {
			return
		}
	}
	s.log.Warn("no analyzer can get any packet: every weight is 0 or every analyzer drained or forced down; packets wait, then agents get BUSY", "analyzers", len(as))
}

func findAnalyzer(as []AnalyzerConfig, name string) (AnalyzerConfig, bool) {
	for _, a := range as {
		if a.Name == name {
			return a, true
		}
	}
	return AnalyzerConfig{}, false
}

func mustApply(err error) {
	if err != nil {
		panic("BUG: proxy: the balancer refused a validated change: " + err.Error())
	}
}

func setAdmin(set *balancer.Set, name string, st balancer.AdminState) error {
	switch st {
	case balancer.Drained:
		return set.Drain(name)
	case balancer.ForcedDown:
		return set.ForceDown(name)
	case balancer.ForcedUp:
		return set.ForceUp(name)
	}
	return set.Enable(name)
}

// addAnalyzer adds one analyzer to the balancer, registers its metrics and
// publishes it in the registry. Under s.ctl.
func (s *Server) addAnalyzer(a AnalyzerConfig) {
	id, err := s.set.Add(balancer.AnalyzerConfig{Name: a.Name, Addr: a.Addr, Weight: a.Weight, Admin: a.Admin, Ramp: a.Ramp})
	mustApply(err)
	m, _ := s.set.Member(a.Name)
	st := &analyzerState{cfg: a, id: id, gen: m.Gen, m: newAnalyzerMetrics(s.mset, a.Name)}
	s.reg.Store(s.reg.Load().with(id, st))
}

// removeAnalyzer takes one analyzer out of the balancer (no more picks),
// then out of the registry (the loops drain their connections to it) and
// unregisters its metrics. Under s.ctl.
func (s *Server) removeAnalyzer(name string) {
	m, ok := s.set.Member(name)
	if !ok {
		panic("BUG: proxy: removing an analyzer the balancer does not have: " + name)
	}
	mustApply(s.set.Remove(name))
	reg := s.reg.Load()
	if st := reg.get(m.ID); st != nil {
		st.m.unregister(s.mset)
	}
	s.reg.Store(reg.with(m.ID, nil))
}
