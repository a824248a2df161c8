package balancer

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Sentinel errors. Callers test them with errors.Is; the returned errors
// wrap them with the analyzer or field concerned.
var (
	// ErrInvalidConfig is returned by Config.Validate and New.
	ErrInvalidConfig = errors.New("balancer: invalid config")
	// ErrUnknownStrategy is returned by ParseStrategy for a name it does not know.
	ErrUnknownStrategy = errors.New("balancer: unknown strategy")
	// ErrInvalidWeight is returned for a negative, NaN or infinite weight.
	ErrInvalidWeight = errors.New("balancer: invalid weight")
	// ErrInvalidAnalyzer is returned by Add for an empty name or address.
	ErrInvalidAnalyzer = errors.New("balancer: invalid analyzer")
	// ErrDuplicateName is returned by Add when the name is already in the set.
	ErrDuplicateName = errors.New("balancer: duplicate analyzer name")
	// ErrUnknownAnalyzer is returned by the by-name methods for a name that is
	// not in the set.
	ErrUnknownAnalyzer = errors.New("balancer: unknown analyzer")
	// ErrTooManyAnalyzers is returned by Add when Config.MaxAnalyzers IDs are
	// in use.
	ErrTooManyAnalyzers = errors.New("balancer: too many analyzers")
)

// Strategy chooses how a Cursor picks among the selectable analyzers.
// The zero value is SWRR.
type Strategy uint8

const (
	// SWRR is exact smooth weighted round robin over a precomputed sequence:
	// every prefix of N picks from a cursor gives analyzer i between
	// floor(N·share_i) and ceil(N·share_i) picks. The default.
	SWRR Strategy = iota
	// Random is weighted random selection (Vose alias table, per-cursor PCG).
	// Kept for comparison: its shares drift as a binomial does.
	Random
	// Hash is weighted rendezvous hashing on the key passed to Pick: sticky
	// routing per key, and only the keys of an analyzer that leaves (or the
	// keys a joining analyzer wins) move.
	Hash
)

var strategyNames = [...]string{SWRR: "swrr", Random: "random", Hash: "hash"}

// String returns the name ParseStrategy accepts.
func (s Strategy) String() string {
	if int(s) < len(strategyNames) {
		return strategyNames[s]
	}
	return fmt.Sprintf("Strategy(%d)", uint8(s))
}

// StrategyNames lists the names ParseStrategy accepts, default first, for
// flag help texts.
func StrategyNames() []string { return append([]string(nil), strategyNames[:]...) }

// ParseStrategy maps a name ("swrr", "random", "hash"; case-insensitive) to
// a Strategy.
func ParseStrategy(name string) (Strategy, error) {
	for i, n := range strategyNames {
		if strings.EqualFold(name, n) {
			return Strategy(i), nil
		}
	}
	return 0, fmt.Errorf("cannot parse strategy %q: %w (valid: %s)",
		name, ErrUnknownStrategy, strings.Join(strategyNames[:], ", "))
}

// Config configures a Set. Start from DefaultConfig. In a struct literal a
// zero field takes its DefaultConfig value, except SlowStart (zero disables
// slow start), Seed (zero picks a random seed) and Strategy (zero is SWRR).
type Config struct {
	// Strategy is the picker every Cursor of the set uses. Default SWRR.
	Strategy Strategy

	// Rise is how many consecutive successes (Connected, HeartbeatOK) bring a
	// down analyzer up. Default 2, as HAProxy's rise.
	Rise int
	// Fall is how many consecutive failures (ConnectFailed, HeartbeatMissed,
	// WriteError, AckTimeout) take an up analyzer down and open its circuit
	// breaker. Default 3, as HAProxy's fall.
	Fall int

	// SlowStart is how long an analyzer that enters service (health up,
	// admin enable or force up, weight raised from 0) takes to ramp its
	// effective weight linearly from Weight/SlowStartSteps to Weight.
	// The steps fall on a grid of SlowStart/SlowStartSteps shared by all
	// analyzers, so that analyzers recovering together share snapshot
	// rebuilds; the first step is cut short by the grid, and a ramp lasts
	// between SlowStart-SlowStart/SlowStartSteps and SlowStart.
	// Zero disables slow start. Default 10s.
	SlowStart time.Duration
	// SlowStartSteps is how many times the effective weight rises during a
	// slow start; the snapshot is rebuilt at each step. Default 10, at most
	// 1000.
	SlowStartSteps int

	// BreakerBackoff is how long a circuit breaker stays open the first time
	// it trips; each further trip without a rise in between doubles it.
	// The actual wait is drawn uniformly from [d/2, d) (equal jitter) so that
	// distributors do not redial in lock-step. Default 1s.
	BreakerBackoff time.Duration
	// BreakerMaxBackoff caps the doubled backoff. Default 30s.
	BreakerMaxBackoff time.Duration
	// HalfOpenProbes is how many AllowProbe calls a half-open breaker grants
	// before it waits for their outcome. Default 1.
	HalfOpenProbes int
	// ProbeTimeout is how long a half-open breaker waits for the outcome of
	// its granted probes before it counts them as failed and opens again.
	// Default 5s.
	ProbeTimeout time.Duration

	// MaxAnalyzers bounds the number of analyzers in the set. Every ID is
	// below it, so per-ID arrays of this length never need to grow.
	// Default 256, at most 4096.
	MaxAnalyzers int

	// Seed seeds the Random strategy's per-cursor generators and the breaker
	// jitter; the same seed gives the same picks and waits. Zero picks a
	// random seed, which is what production wants: distributors sharing a
	// seed would also share their jitter.
	Seed uint64

	// Now is the clock for health, breaker and slow-start timing. Tests
	// inject a fake clock; nil means time.Now.
	Now func() time.Time

	// Logger receives one line per health, breaker and admin transition,
	// with the attribute component=balancer.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Limits on Config fields.
const (
	maxSlowStartSteps = 1000
	maxAnalyzersLimit = 4096
)

// DefaultConfig returns the configuration a distributor runs with unless
// told otherwise.
func DefaultConfig() Config {
	return Config{
		Strategy:          SWRR,
		Rise:              2,
		Fall:              3,
		SlowStart:         10 * time.Second,
		SlowStartSteps:    10,
		BreakerBackoff:    time.Second,
		BreakerMaxBackoff: 30 * time.Second,
		HalfOpenProbes:    1,
		ProbeTimeout:      5 * time.Second,
		MaxAnalyzers:      256,
	}
}

// WithDefaults returns c with its zero fields filled from DefaultConfig
// (see Config), as New applies it.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Rise == 0 {
		c.Rise = d.Rise
	}
	if c.Fall == 0 {
		c.Fall = d.Fall
	}
	if c.SlowStartSteps == 0 {
		c.SlowStartSteps = d.SlowStartSteps
	}
	if c.BreakerBackoff == 0 {
		c.BreakerBackoff = d.BreakerBackoff
	}
	if c.BreakerMaxBackoff == 0 {
		c.BreakerMaxBackoff = d.BreakerMaxBackoff
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = d.HalfOpenProbes
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.MaxAnalyzers == 0 {
		c.MaxAnalyzers = d.MaxAnalyzers
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first invalid field. Zero fields are valid: they
// take their defaults.
func (c Config) Validate() error {
	bad := func(field, want string, got any) error {
		return fmt.Errorf("%w: %s must be %s, got %v", ErrInvalidConfig, field, want, got)
	}
	switch {
	case int(c.Strategy) >= len(strategyNames):
		return bad("Strategy", "one of "+strings.Join(strategyNames[:], ", "), c.Strategy)
	case c.Rise < 0:
		return bad("Rise", ">= 1", c.Rise)
	case c.Fall < 0:
		return bad("Fall", ">= 1", c.Fall)
	case c.SlowStart < 0:
		return bad("SlowStart", ">= 0 (0 disables it)", c.SlowStart)
	case c.SlowStartSteps < 0 || c.SlowStartSteps > maxSlowStartSteps:
		return bad("SlowStartSteps", fmt.Sprintf("in [1, %d]", maxSlowStartSteps), c.SlowStartSteps)
	case c.BreakerBackoff < 0:
		return bad("BreakerBackoff", "> 0", c.BreakerBackoff)
	case c.BreakerMaxBackoff < 0:
		return bad("BreakerMaxBackoff", "> 0", c.BreakerMaxBackoff)
	case c.BreakerBackoff > 0 && c.BreakerMaxBackoff > 0 && c.BreakerMaxBackoff < c.BreakerBackoff:
		return bad("BreakerMaxBackoff", ">= BreakerBackoff ("+c.BreakerBackoff.String()+")", c.BreakerMaxBackoff)
	case c.HalfOpenProbes < 0:
		return bad("HalfOpenProbes", ">= 1", c.HalfOpenProbes)
	case c.ProbeTimeout < 0:
		return bad("ProbeTimeout", "> 0", c.ProbeTimeout)
	case c.MaxAnalyzers < 0 || c.MaxAnalyzers > maxAnalyzersLimit:
		return bad("MaxAnalyzers", fmt.Sprintf("in [1, %d]", maxAnalyzersLimit), c.MaxAnalyzers)
	}
	return nil
}

// MarshalText returns the strategy's name.
func (s Strategy) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a name as ParseStrategy does, for config files.
func (s *Strategy) UnmarshalText(b []byte) error {
	v, err := ParseStrategy(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
