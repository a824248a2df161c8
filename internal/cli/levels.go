package cli

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
)

// LevelSpec is a parsed --log-level: a default level and levels for
// components. Its syntax is a comma-separated list of LEVEL (the default,
// at most once) and COMPONENT=LEVEL items, e.g. "info" or
// "proxy=debug,balancer=info,warn"; a level is debug, info, warn or
// error. A component is the value of the "component" attribute a logger
// was given with Logger.With.
type LevelSpec struct {
	Default    slog.Level
	Components map[string]slog.Level
}

// levelSyntax ends every --log-level error: what the flag takes.
const levelSyntax = "want a level (debug, info, warn or error) or a list like proxy=debug,balancer=info,warn (COMPONENT=LEVEL items, and a bare LEVEL for the rest)"

// ParseLevels reads a --log-level. The default is info when the list
// names none.
func ParseLevels(s string) (LevelSpec, error) {
	spec := LevelSpec{Default: slog.LevelInfo}
	bad := func(why string) (LevelSpec, error) {
		return LevelSpec{}, fmt.Errorf("--log-level %q: %s; %s", s, why, levelSyntax)
	}
	if strings.TrimSpace(s) == "" {
		return bad("empty")
	}
	haveDefault := false
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		comp, lvl, named := strings.Cut(item, "=")
		if !named {
			comp, lvl = "", item
		}
		comp, lvl = strings.TrimSpace(comp), strings.TrimSpace(lvl)
		var l slog.Level
		if lvl == "" || l.UnmarshalText([]byte(lvl)) != nil {
			return bad(fmt.Sprintf("%q is not a level", lvl))
		}
		switch {
		case !named && haveDefault:
			return bad("two default levels")
		case !named:
			spec.Default, haveDefault = l, true
		case comp == "" || strings.ContainsAny(comp, " \t="):
			return bad(fmt.Sprintf("%q is not a component name", comp))
		default:
			if _, dup := spec.Components[comp]; dup {
				return bad(fmt.Sprintf("component %q named twice", comp))
			}
			if spec.Components == nil {
				spec.Components = map[string]slog.Level{}
			}
			spec.Components[comp] = l
		}
	}
	return spec, nil
}

// Check reports a component the spec names that is not in known: a typo
// would otherwise change nothing, silently.
func (s LevelSpec) Check(known []string) error {
	for _, c := range slices.Sorted(maps.Keys(s.Components)) {
		if !slices.Contains(known, c) {
			return fmt.Errorf("--log-level: unknown component %q; the components are %s", c, strings.Join(known, ", "))
		}
	}
	return nil
}

// String is the spec in --log-level syntax, components sorted.
func (s LevelSpec) String() string {
	var b strings.Builder
	for _, c := range slices.Sorted(maps.Keys(s.Components)) {
		fmt.Fprintf(&b, "%s=%s,", c, strings.ToLower(s.Components[c].String()))
	}
	b.WriteString(strings.ToLower(s.Default.String()))
	return b.String()
}

// Levels holds a LevelSpec that may change while loggers use it (a
// reload): every component gets one *slog.LevelVar, made when a logger
// first names it and updated by Set, so that a logger resolves its level
// once, when it is given its component, and a record costs one atomic
// load to check.
type Levels struct {
	mu    sync.Mutex
	spec  LevelSpec
	def   slog.LevelVar
	comps map[string]*slog.LevelVar
}

// NewLevels returns Levels set to spec.
func NewLevels(spec LevelSpec) *Levels {
	l := &Levels{comps: map[string]*slog.LevelVar{}}
	l.Set(spec)
	return l
}

// Set changes every logger's level to what spec says for its component.
func (l *Levels) Set(spec LevelSpec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.spec = spec
	l.def.Set(spec.Default)
	for c, v := range l.comps {
		v.Set(spec.level(c))
	}
}

// Spec returns the spec in force.
func (l *Levels) Spec() LevelSpec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.spec
}

// For returns the level of component ("" for the default).
func (l *Levels) For(component string) slog.Leveler {
	if component == "" {
		return &l.def
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	v := l.comps[component]
	if v == nil {
		v = new(slog.LevelVar)
		v.Set(l.spec.level(component))
		l.comps[component] = v
	}
	return v
}

func (s LevelSpec) level(component string) slog.Level {
	if l, ok := s.Components[component]; ok {
		return l
	}
	return s.Default
}

// componentKey is the attribute that names a logger's component.
const componentKey = "component"

// levelHandler filters records by the level of its logger's component.
// The component is the last "component" attribute added with WithAttrs
// (Logger.With); its level is resolved there, once, so Enabled is an
// atomic load. A "component" attribute passed with one record does not
// count: the record is past Enabled by then.
type levelHandler struct {
	inner  slog.Handler
	levels *Levels
	level  slog.Leveler
}

// NewLevelHandler returns a handler that passes to inner the records at
// or above the level levels gives their logger's component.
func NewLevelHandler(inner slog.Handler, levels *Levels) slog.Handler {
	return &levelHandler{inner: inner, levels: levels, level: levels.For("")}
}

func (h *levelHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, r)
}

func (h *levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	level := h.level
	for _, a := range as {
		if a.Key == componentKey {
			level = h.levels.For(a.Value.String())
		}
	}
	return &levelHandler{inner: h.inner.WithAttrs(as), levels: h.levels, level: level}
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{inner: h.inner.WithGroup(name), levels: h.levels, level: h.level}
}
