package control

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Entry is one line of the audit log: an admin write, a reload or a
// rollback, applied or not, and a refused request.
type Entry struct {
	Time time.Time `json:"time"`
	// Remote is the client's address ("signal" for SIGHUP, "startup").
	Remote string `json:"remote"`
	// Identity is the token's holder; empty when no valid token was given.
	Identity string `json:"identity,omitempty"`
	// Action is what was asked: "add analyzer a5", "weight a2 0.5 over 5m",
	// "reload", "rollback to 7", "POST /api/v1/analyzers"...
	Action string `json:"action"`
	// Result is ok, unchanged (nothing to do), refused (not allowed, or a
	// bad request) or error (allowed and valid, but it failed).
	Result string `json:"result"`
	// Status is the HTTP status answered, for API requests.
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	// Version is the configuration version after the action; Previous
	// the one before, when they differ.
	Version  uint64 `json:"version,omitempty"`
	Previous uint64 `json:"previous_version,omitempty"`
	// Before and After are the analyzer as it was and became (for
	// changes to one analyzer); Changes the whole difference in words.
	Before  any      `json:"before,omitempty"`
	After   any      `json:"after,omitempty"`
	Changes []string `json:"changes,omitempty"`
	// Suppressed counts the refused requests not written since the last
	// entry (they are rate-limited: a client retrying a bad token must not
	// fill the disk).
	Suppressed uint64 `json:"suppressed,omitempty"`
}

// Refusals of clients without a valid token written at most: a burst,
// then a steady rate (a client retrying a bad token must not fill the
// disk). Refusals of a token holder's requests are all written.
const (
	refusalBurst = 20
	refusalRate  = 5 // per second
	// maxEntryText bounds each text field of an entry.
	maxEntryText = 512
)

// auditLog writes entries as JSON lines to a file (synced: an admin
// write is rare and must not be lost) and to the log.
type auditLog struct {
	log *slog.Logger

	mu         sync.Mutex
	path       string
	f          *os.File
	tokens     float64 // refusal token bucket
	last       time.Time
	suppressed uint64
	failed     bool // the last write failed (logged once until one works)
}

func newAuditLog(path string, log *slog.Logger) (*auditLog, error) {
	a := &auditLog{log: log, tokens: refusalBurst}
	return a, a.reopen(path)
}

// reopen opens path (again): after logrotate moved the file, or with a new
// --audit-log. "" writes to the log only.
func (a *auditLog) reopen(path string) error {
	var f *os.File
	if path != "" {
		var err error
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
	}
	a.mu.Lock()
	old := a.f
	a.path, a.f = path, f
	a.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// write records e; anonymous refusals beyond the rate are counted, not
// written.
func (a *auditLog) write(e Entry) {
	e.Action, e.Error, e.Remote = clip(e.Action), clip(e.Error), clip(e.Remote)
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.Result == "refused" && e.Identity == "" {
		now := time.Now() // monotonic, taken in order under the lock
		a.tokens = min(refusalBurst, a.tokens+now.Sub(a.last).Seconds()*refusalRate)
		a.last = now
		if a.tokens < 1 {
			a.suppressed++
			return
		}
		a.tokens--
	}
	e.Suppressed, a.suppressed = a.suppressed, 0
	// With an audit file the log gets the entries at debug level: the
	// file has them, and the log keeps one line per event.
	level := slog.LevelInfo
	if e.Result == "refused" || e.Result == "error" {
		level = slog.LevelWarn
	}
	if a.f != nil || e.Remote == "startup" { // the start has its own log lines
		level = slog.LevelDebug
	}
	a.log.Log(context.Background(), level, "audit", "action", e.Action, "result", e.Result, "remote", e.Remote, "identity", e.Identity,
		"version", e.Version, "changes", e.Changes, "error", e.Error)
	if a.f == nil {
		return
	}
	b, err := json.Marshal(e)
	if err == nil {
		_, err = a.f.Write(append(b, '\n'))
	}
	if err == nil {
		err = a.f.Sync()
	}
	if err != nil && !a.failed {
		a.log.Error("cannot write the audit log; entries go to this log only until it works again", "path", a.path, "err", err)
	}
	a.failed = err != nil
}

// clip bounds a text field of an entry.
func clip(s string) string {
	if len(s) <= maxEntryText {
		return s
	}
	return s[:maxEntryText] + "…(clipped)"
}

func (a *auditLog) currentPath() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.path
}

func (a *auditLog) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
}
