package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"
)

// WriteReady writes the line that says a command is up, for the scripts
// and tests that start it on port 0 and read its addresses from it.
// In text it is "<what> ready k=v k=v ..." on w, the same at every log
// level; with a JSON log it is a record with msg "<what> ready" and attrs
// as attributes, written through log at level INFO whatever the level
// (a script waiting for it must not wait forever under --log-level warn).
// ParseReady reads either.
func WriteReady(w io.Writer, log *slog.Logger, jsonLog bool, what string, attrs ...slog.Attr) {
	if jsonLog {
		r := slog.NewRecord(time.Now(), slog.LevelInfo, what+" ready", 0)
		r.AddAttrs(attrs...)
		_ = log.Handler().Handle(context.Background(), r)
		return
	}
	var b strings.Builder
	b.WriteString(what + " ready")
	for _, a := range attrs {
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value.Resolve().String())
	}
	b.WriteByte('\n')
	io.WriteString(w, b.String())
}

var readyField = regexp.MustCompile(`(\w+)=(\S*)`)

// ParseReady reads a line WriteReady wrote for what, in text or JSON, and
// returns its fields (JSON numbers as written, "time" and "level" left
// out); ok is false for any other line.
func ParseReady(line, what string) (fields map[string]string, ok bool) {
	msg := what + " ready"
	if strings.HasPrefix(line, "{") {
		d := json.NewDecoder(strings.NewReader(line))
		d.UseNumber()
		var rec map[string]any
		if d.Decode(&rec) != nil || rec["msg"] != msg {
			return nil, false
		}
		fields = map[string]string{}
		for k, v := range rec {
			switch k {
			case "time", "level", "msg":
				continue
			}
			switch v := v.(type) {
			case string:
				fields[k] = v
			case nil:
				fields[k] = ""
			default:
				b, _ := json.Marshal(v)
				fields[k] = string(bytes.Trim(b, `"`))
			}
		}
		return fields, true
	}
	rest, found := strings.CutPrefix(line, msg)
	if !found || (rest != "" && rest[0] != ' ') {
		return nil, false
	}
	fields = map[string]string{}
	for _, kv := range readyField.FindAllStringSubmatch(rest, -1) {
		fields[kv[1]] = kv[2]
	}
	return fields, true
}
