// Package control is logdist's run-time control: every change to the
// running configuration — an admin API write, a reload of the config file
// (SIGHUP), a rollback — goes through one Controller, which checks it
// whole, applies it to the proxy.Server, numbers it as a new version with
// who, when and what, keeps the history (on disk under --data-dir, so run-
// time changes survive a restart) and writes the audit log.
//
// What a restart brings back: the configuration that was running, if the
// config file and flags are the same as when it was made; if they changed,
// the file and flags, as a new version whose changes are logged. A restart
// never silently undoes a run-time change, and never silently ignores an
// edit of the file.
package control

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/pflag"

	"github.com/logdist/logdist/internal/config"
	"github.com/logdist/logdist/internal/promexp"
	"github.com/logdist/logdist/proxy"
)

// Version is one configuration in the history.
type Version struct {
	Version uint64    `json:"version"`
	Time    time.Time `json:"time"`
	Actor   Actor     `json:"actor"`
	// Action says what made it: "start", "reload", "add analyzer a5",
	// "weight a2 0.5 over 5m0s", "rollback to 7"...
	Action string `json:"action"`
	// Changes are the differences from the version before, in words.
	Changes []string `json:"changes"`
	// Base is the hash of the config file and flags (config.Spec.Hash) in
	// force when it was made: a restart or reload with the same file and
	// flags keeps the run-time changes made since.
	Base string      `json:"base"`
	Spec config.Spec `json:"config"`
}

// Actor is who asked for a change.
type Actor struct {
	// Remote is the client's address, or "signal" (SIGHUP), "startup".
	Remote string `json:"remote"`
	// Identity is the admin token's holder; empty when none was needed.
	Identity string `json:"identity,omitempty"`
}

// String names the actor: identity@address, or the address.
func (a Actor) String() string {
	if a.Identity != "" {
		return a.Identity + "@" + a.Remote
	}
	return a.Remote
}

// Kinds of refusal: a change's error Is one of them (errors.Is), and says
// why in its own words.
var (
	ErrInvalid  = errors.New("invalid")   // a value that cannot work
	ErrNotFound = errors.New("not found") // no such analyzer or version
	ErrConflict = errors.New("conflict")  // name in use, or a setting only a restart changes
)

// refusal is an error of a kind, whose text is only the reason.
type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == r.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Options configure a Controller.
type Options struct {
	// DataDir keeps the version history; empty: in memory only.
	DataDir string
	// AuditLog is the audit file; empty: the log only.
	AuditLog string
	// Args is the command line, which Reload reads again (with the file).
	Args []string
	Log  *slog.Logger
	// MaxVersions is how many versions are kept (default 100).
	MaxVersions int
}

// Controller owns the running configuration. Its methods are safe for
// concurrent use; changes are applied one at a time.
type Controller struct {
	opts  Options
	log   *slog.Logger
	audit *auditLog
	store *store // nil without a data dir

	mu    sync.Mutex
	srv   *proxy.Server
	base  proxy.Config            // what a Spec does not hold (Logger, Metrics, Auth...)
	apply func(config.Spec) error // the settings outside the proxy
	hist  []Version               // oldest first; the last is running
	m     ctlMetrics
}

type ctlMetrics struct {
	changes, reloads, reloadFailures, refused *metrics.Counter
}

// Open takes the data dir (if any), reads the history back and opens the
// audit log. Call Start, then Attach.
func Open(o Options) (*Controller, error) {
	if o.MaxVersions <= 0 {
		o.MaxVersions = 100
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	c := &Controller{opts: o, log: o.Log.With("component", "control")}
	var err error
	if c.audit, err = newAuditLog(o.AuditLog, c.log); err != nil {
		return nil, err
	}
	if o.DataDir != "" {
		var torn bool
		if c.store, c.hist, torn, err = openStore(o.DataDir, o.MaxVersions); err != nil {
			c.audit.close()
			return nil, err
		}
		if torn {
			c.log.Warn("the last line of the version history was cut short (a crash while it was written); it was dropped", "dir", o.DataDir)
		}
	}
	return c, nil
}

// Close releases the data dir and the audit log.
func (c *Controller) Close() {
	c.audit.close()
	if c.store != nil {
		c.store.close()
	}
}

// Start decides the configuration to start with, given the one the config
// file and flags declare: the last version in the history if it was made
// from the same file and flags (run-time changes survive the restart),
// else the declared one as a new version, whose differences from the last
// are logged. It records that version and returns it.
func (c *Controller) Start(declared config.Spec) (Version, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := declared.Hash()
	now := time.Now().UTC()
	actor := Actor{Remote: "startup"}
	if n := len(c.hist); n > 0 {
		last := c.hist[n-1]
		if last.Base == base {
			c.log.Info("configuration restored from the data dir: the config file and flags are the same as when it was made",
				"version", last.Version, "made", last.Time, "action", last.Action)
			c.audit.write(Entry{Time: now, Remote: actor.Remote, Action: "start", Result: "ok", Version: last.Version})
			return last, nil
		}
		v := Version{Version: last.Version + 1, Time: now, Actor: actor, Action: "start: the config file or flags changed",
			Changes: config.Diff(last.Spec, declared), Base: base, Spec: declared.Clone()}
		c.log.Warn("the config file or flags changed since the running configuration was saved; they win, as a new version",
			"version", v.Version, "previous", last.Version, "changes", v.Changes)
		if err := c.record(v); err != nil {
			return Version{}, err
		}
		c.audit.write(Entry{Time: now, Remote: actor.Remote, Action: v.Action, Result: "ok", Version: v.Version, Previous: last.Version, Changes: v.Changes})
		return v, nil
	}
	v := Version{Version: 1, Time: now, Actor: actor, Action: "start", Base: base, Spec: declared.Clone()}
	if c.store == nil {
		c.log.Info("no --data-dir: run-time changes (admin API) are lost at restart, when the config file and flags are applied again")
	}
	if err := c.record(v); err != nil {
		return Version{}, err
	}
	c.audit.write(Entry{Time: now, Remote: actor.Remote, Action: "start", Result: "ok", Version: 1})
	return v, nil
}

// Attach hands the Controller the running server, started from Start's
// version; base holds what a Spec does not (Logger, Metrics, Auth...), and
// apply takes the settings outside the proxy (log level, admin tokens and
// allow list) after each change and each reload.
func (c *Controller) Attach(srv *proxy.Server, base proxy.Config, apply func(config.Spec) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.srv, c.base, c.apply = srv, base, apply
	ms := srv.Metrics()
	c.m = ctlMetrics{
		changes:        ms.NewCounter("logdist_config_changes_total"),
		reloads:        ms.NewCounter("logdist_config_reloads_total"),
		reloadFailures: ms.NewCounter("logdist_config_reload_failures_total"),
		refused:        ms.NewCounter("logdist_admin_requests_refused_total"),
	}
}

// Persistent reports whether versions are kept on disk (--data-dir), so
// that run-time changes survive a restart.
func (c *Controller) Persistent() bool { return c.store != nil }

// Current returns the running version.
func (c *Controller) Current() Version {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hist[len(c.hist)-1]
}

// Versions returns the history, oldest first.
func (c *Controller) Versions() []Version {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.hist)
}

// Get returns version n.
func (c *Controller) Get(n uint64) (Version, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.find(n)
}

func (c *Controller) find(n uint64) (Version, error) {
	for _, v := range c.hist {
		if v.Version == n {
			return v, nil
		}
	}
	return Version{}, refuse(ErrNotFound, "version %d is not in the history (it keeps %d to %d)", n, c.hist[0].Version, c.hist[len(c.hist)-1].Version)
}

// Refused records a request refused before it reached the Controller (no
// token, a bad token, an address not allowed, a malformed body): always
// counted, and written to the audit log when audit is set (refusals of
// unknown clients at a bounded rate).
func (c *Controller) Refused(actor Actor, action string, status int, reason string, audit bool) {
	if c.m.refused != nil {
		c.m.refused.Inc()
	}
	if audit {
		c.audit.write(Entry{Time: time.Now().UTC(), Remote: actor.Remote, Identity: actor.Identity, Action: action,
			Result: "refused", Status: status, Error: reason, Version: c.Current().Version})
	}
}

// Record writes e to the audit log as it is: an event from elsewhere in
// logdist (an agent refused at its handshake). Refusals without an
// identity are written at a bounded rate, like the API's.
func (c *Controller) Record(e Entry) { c.audit.write(e) }

// Audit records an action that changes no configuration (a queue flush).
func (c *Controller) Audit(actor Actor, action string) {
	c.audit.write(Entry{Time: time.Now().UTC(), Remote: actor.Remote, Identity: actor.Identity, Action: action,
		Result: "ok", Version: c.Current().Version})
}

// Result is what a change did.
type Result struct {
	// Version is the running version after the change; Changed is false
	// when there was nothing to change (the same version runs).
	Version Version
	Changed bool
}

// AddAnalyzer adds an analyzer.
func (c *Controller) AddAnalyzer(actor Actor, a config.Analyzer) (Result, error) {
	return c.change(actor, "add analyzer "+a.Name, a.Name, func(s *config.Spec) error {
		if s.Analyzer(a.Name) >= 0 {
			return refuse(ErrConflict, "analyzer %q exists (change it with PATCH, or remove it first)", a.Name)
		}
		a.Ramp = nil
		s.Analyzers = append(s.Analyzers, a)
		return nil
	})
}

// Patch is a change to one analyzer; nil fields stay.
type Patch struct {
	Weight *float64
	// Ramp, with Weight, moves to it over this long instead of at once.
	Ramp  time.Duration
	State *string
}

// PatchAnalyzer changes an analyzer's weight (at once or over a ramp)
// and/or its state.
func (c *Controller) PatchAnalyzer(actor Actor, name string, p Patch) (Result, error) {
	what := ""
	if p.Weight != nil {
		what = "weight " + strconv.FormatFloat(*p.Weight, 'g', -1, 64)
		if p.Ramp > 0 {
			what += " over " + p.Ramp.String()
		}
	}
	if p.State != nil {
		if what != "" {
			what += ", "
		}
		what += "state " + *p.State
	}
	return c.change(actor, "set analyzer "+name+" "+what, name, func(s *config.Spec) error {
		i := s.Analyzer(name)
		if i < 0 {
			return refuse(ErrNotFound, "no analyzer %q", name)
		}
		if p.Weight == nil && p.State == nil {
			return refuse(ErrInvalid, "nothing to change (give weight, ramp with weight, or state)")
		}
		if p.Ramp < 0 || p.Ramp > 0 && p.Weight == nil {
			return refuse(ErrInvalid, "a ramp needs a weight to ramp to, and a positive duration")
		}
		a := &s.Analyzers[i]
		if p.Weight != nil {
			// A ramp to the weight already in force (no ramp running) is
			// nothing to do.
			still := a.Weight == *p.Weight && a.Ramp == nil
			a.Weight, a.Ramp = *p.Weight, nil
			if p.Ramp > 0 && !still {
				a.Ramp = &config.Ramp{Over: config.Duration(p.Ramp)} // the proxy starts it
			}
		}
		if p.State != nil {
			a.State = *p.State
			if a.State == "enabled" {
				a.State = ""
			}
		}
		return nil
	})
}

// RemoveAnalyzer removes an analyzer. It is no longer picked at once;
// its packets in flight are settled where they are, and its connections
// close when they are (proxy.RemoveAnalyzer): a removal drains first.
func (c *Controller) RemoveAnalyzer(actor Actor, name string) (Result, error) {
	return c.change(actor, "remove analyzer "+name, name, func(s *config.Spec) error {
		i := s.Analyzer(name)
		if i < 0 {
			return refuse(ErrNotFound, "no analyzer %q", name)
		}
		s.Analyzers = slices.Delete(s.Analyzers, i, i+1)
		return nil
	})
}

// Rollback makes version n's configuration the running one, as a new
// version: its analyzers and the proxy's settings. Settings only a
// restart can change must be the same; the admin access settings
// (admin-allow, admin-token-file), audit-log and log-level stay as they
// are.
func (c *Controller) Rollback(actor Actor, n uint64) (Result, error) {
	return c.change(actor, "rollback to "+strconv.FormatUint(n, 10), "", func(s *config.Spec) error {
		v, err := c.find(n)
		if err != nil {
			return err
		}
		// The admin API's own access settings, the audit log and the log
		// level are not rolled back: they come from the file (a reload
		// takes them), never from an old version a token holder picks.
		keep := *s
		*s = v.Spec.Clone()
		s.AdminAllow, s.AdminTokenFile, s.AuditLog, s.LogLevel = keep.AdminAllow, keep.AdminTokenFile, keep.AuditLog, keep.LogLevel
		return nil
	})
}

// Reload reads the config file and the command line again. If they say
// what they said when the running configuration was made (same hash), it
// changes nothing: the run-time changes made since stay. Otherwise the
// file and flags become the running configuration, as a new version. A
// file that does not parse or check, or that changes a setting only a
// restart changes, leaves the running configuration as it is. Either
// way the settings outside the proxy are taken again (the admin token
// file is read again, the audit log reopened).
func (c *Controller) Reload(actor Actor) (Result, error) {
	declared, _, err := config.Load(c.opts.Args, func(*pflag.FlagSet) {})
	if err == nil {
		err = declared.Check()
	}
	if err != nil {
		err = refuse(ErrInvalid, "%v", err)
		c.m.reloadFailures.Inc()
		c.audit.write(Entry{Time: time.Now().UTC(), Remote: actor.Remote, Identity: actor.Identity, Action: "reload",
			Result: "error", Error: err.Error(), Version: c.Current().Version})
		return Result{Version: c.Current()}, err
	}
	c.m.reloads.Inc()
	if cur := c.Current(); cur.Base == declared.Hash() {
		if err := c.reapply(cur.Spec, true); err != nil {
			c.m.reloadFailures.Inc()
			c.audit.write(Entry{Time: time.Now().UTC(), Remote: actor.Remote, Identity: actor.Identity, Action: "reload",
				Result: "error", Error: err.Error(), Version: cur.Version})
			return Result{Version: cur}, err
		}
		c.log.Info("reload: the config file and flags are unchanged; the running configuration stays", "version", cur.Version)
		c.audit.write(Entry{Time: time.Now().UTC(), Remote: actor.Remote, Identity: actor.Identity, Action: "reload",
			Result: "unchanged", Version: cur.Version})
		return Result{Version: cur}, nil
	}
	res, err := c.changeBase(actor, "reload", "", declared.Hash(), func(s *config.Spec) error {
		*s = declared.Clone()
		return nil
	})
	if err != nil {
		c.m.reloadFailures.Inc()
	}
	return res, err
}

// reapply hands spec's outside settings to apply (which reads the token
// file again), then, on a reload (even one that changed nothing) or a new
// path, reopens the audit log (after logrotate moved it). One failing
// does not keep the other from being taken.
func (c *Controller) reapply(spec config.Spec, reload bool) error {
	var errs []error
	if c.apply != nil {
		errs = append(errs, c.apply(spec))
	}
	if reload || spec.AuditLog != c.audit.currentPath() {
		errs = append(errs, c.audit.reopen(spec.AuditLog))
	}
	return errors.Join(errs...)
}

// change applies edit to a copy of the running Spec, as a new version.
func (c *Controller) change(actor Actor, action, analyzer string, edit func(*config.Spec) error) (Result, error) {
	return c.changeBase(actor, action, analyzer, "", edit)
}

// changeBase is change; base, when set, becomes the new version's Base
// (a reload), else it keeps the running one's.
func (c *Controller) changeBase(actor Actor, action, analyzer, base string, edit func(*config.Spec) error) (res Result, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.hist[len(c.hist)-1]
	now := time.Now().UTC()
	entry := Entry{Time: now, Remote: actor.Remote, Identity: actor.Identity, Action: action, Version: cur.Version}
	defer func() {
		switch {
		case err != nil:
			entry.Result, entry.Error = "refused", err.Error()
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
				entry.Result = "error"
			}
		case !res.Changed:
			entry.Result = "unchanged"
		default:
			entry.Result, entry.Version, entry.Previous, entry.Changes = "ok", res.Version.Version, cur.Version, res.Version.Changes
		}
		if analyzer != "" {
			entry.Before = analyzerIn(cur.Spec, analyzer)
			if res.Changed {
				entry.After = analyzerIn(res.Version.Spec, analyzer)
			}
		}
		c.audit.write(entry)
	}()
	// A ramp that has ended is the weight: compare without it, so that a
	// change does not list "weight 1 → 1" for a ramp that finished.
	running := endRamps(cur.Spec, now)
	next := running.Clone()
	if err := edit(&next); err != nil {
		return Result{Version: cur}, err
	}
	if keys := config.Restart(cur.Spec, next); len(keys) > 0 {
		return Result{Version: cur}, refuse(ErrConflict, "only a restart changes %s (the running configuration stays)", strings.Join(keys, ", "))
	}
	if err := next.Check(); err != nil {
		return Result{Version: cur}, refuse(ErrInvalid, "%v", err)
	}
	pc, err := next.Proxy(c.base)
	if err != nil {
		return Result{Version: cur}, refuse(ErrInvalid, "%v", err)
	}
	// Nothing to change: unless it is a reload of a file that says the
	// same in other words, which is recorded (a version with no changes)
	// so that the next reload with that file changes nothing either.
	if len(config.Diff(running, next)) == 0 && (base == "" || base == cur.Base) {
		return Result{Version: cur}, nil
	}
	v := Version{Version: cur.Version + 1, Time: now, Actor: actor, Action: action, Base: cur.Base}
	if base != "" {
		v.Base = base
	}
	if err := c.srv.ReconfigureAs(pc, v.Version, action); err != nil {
		if errors.Is(err, proxy.ErrRestartRequired) {
			err = refuse(ErrConflict, "%v", err)
		}
		return Result{Version: cur}, err
	}
	// The proxy starts ramps: record them as started.
	for _, a := range c.srv.Config().Analyzers {
		if i := next.Analyzer(a.Name); i >= 0 {
			next.Analyzers[i].Ramp = nil
			if r := a.Ramp; r.Over > 0 && r.Start.Add(r.Over).After(now) {
				next.Analyzers[i].Ramp = &config.Ramp{From: r.From, Start: r.Start.UTC(), Over: config.Duration(r.Over)}
			}
		}
	}
	v.Spec, v.Changes = next, config.Diff(running, next)
	if err := c.record(v); err != nil {
		// Not on disk: not made. Put the running version back.
		if prev, perr := cur.Spec.Proxy(c.base); perr == nil {
			if rerr := c.srv.ReconfigureAs(prev, cur.Version, "revert: "+action); rerr != nil {
				c.log.Error("cannot put the previous configuration back", "version", cur.Version, "err", rerr)
			}
		}
		return Result{Version: cur}, fmt.Errorf("cannot save version %d, so it was not applied: %w", v.Version, err)
	}
	c.m.changes.Inc()
	if err := c.reapply(next, base != ""); err != nil {
		c.log.Error("configuration applied, but the settings outside the proxy were not taken", "version", v.Version, "err", err)
	}
	return Result{Version: v, Changed: true}, nil
}

// record appends v to the history (and the data dir).
func (c *Controller) record(v Version) error {
	hist := append(slices.Clone(c.hist), v)
	if len(hist) > c.opts.MaxVersions {
		hist = hist[len(hist)-c.opts.MaxVersions:]
	}
	if c.store != nil {
		cerr, err := c.store.append(v, hist)
		if err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		if cerr != nil {
			c.log.Warn("cannot compact the version history; it keeps growing until a compaction works", "dir", c.opts.DataDir, "err", cerr)
		}
	}
	c.hist = hist
	return nil
}

// endRamps returns a copy of s without the ramps that have ended by now.
func endRamps(s config.Spec, now time.Time) config.Spec {
	s = s.Clone()
	for i, a := range s.Analyzers {
		if r := a.Ramp; r != nil && !r.Start.IsZero() && !now.Before(r.Start.Add(time.Duration(r.Over))) {
			s.Analyzers[i].Ramp = nil
		}
	}
	return s
}

func analyzerIn(s config.Spec, name string) any {
	if i := s.Analyzer(name); i >= 0 {
		return s.Analyzers[i]
	}
	return nil
}

// MetricFamilies documents the controller's metrics, for promexp.
var MetricFamilies = []promexp.Family{
	{Name: "logdist_config_changes_total", Type: "counter", Help: "Configuration changes applied (admin API writes, reloads and rollbacks that changed something)."},
	{Name: "logdist_config_reloads_total", Type: "counter", Help: "Configuration reloads (SIGHUP or POST /api/v1/config/reload)."},
	{Name: "logdist_config_reload_failures_total", Type: "counter", Help: "Configuration reloads refused (the configuration in force stays)."},
	{Name: "logdist_admin_requests_refused_total", Type: "counter", Help: "Admin API writes refused (invalid, conflicting, or not allowed)."},
}
