package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	f := func(format, level, wantErr string) {
		t.Helper()
		var buf bytes.Buffer
		log, err := NewLogger(&buf, format, level)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("NewLogger(%q, %q) error %v, want one mentioning %s", format, level, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		log.Warn("hello", "k", "v")
		log.Debug("hidden")
		if !strings.Contains(buf.String(), "hello") || strings.Contains(buf.String(), "hidden") {
			t.Fatalf("logged %q", buf.String())
		}
		if format == "json" && !strings.HasPrefix(buf.String(), "{") {
			t.Fatalf("json logger wrote %q", buf.String())
		}
	}
	f("text", "info", "")
	f("json", "warn", "")
	f("JSON", "info", "")
	f("xml", "info", "--log-format")
	f("text", "loud", "--log-level")
}
