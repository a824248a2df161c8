package testtool

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
)

// JSONLog collects the records of a JSON slog handler writing from several
// goroutines, for tests that check what was logged.
type JSONLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer for the handler.
func (l *JSONLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Logger returns a logger at debug writing JSON records to l.
func (l *JSONLog) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Records returns the records written so far whose message is msg (every
// record when msg is "").
func (l *JSONLog) Records(t testing.TB, msg string) []map[string]any { return l.read(t, msg, false) }

// Take returns every record written since the last Take, and forgets them.
func (l *JSONLog) Take(t testing.TB) []map[string]any { return l.read(t, "", true) }

func (l *JSONLog) read(t testing.TB, msg string, forget bool) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if msg == "" || rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	if forget {
		l.buf.Reset()
	}
	return out
}
