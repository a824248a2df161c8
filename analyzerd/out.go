package analyzerd

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/logdist/logdist/frame"
)

// record is one line of --out: one message with its packet's identity.
type record struct {
	Agent    string            `json:"agent"`
	PacketID uint64            `json:"packet_id"`
	TraceID  string            `json:"trace_id"`
	TS       string            `json:"ts"` // RFC 3339 with nanoseconds, UTC
	Severity string            `json:"severity"`
	Facility uint8             `json:"facility"`
	Host     string            `json:"host"`
	App      string            `json:"app"`
	Msg      string            `json:"msg"`
	Attrs    map[string]string `json:"attrs"`
}

// jsonOut writes messages as JSON lines. Safe for concurrent use: the
// lines of one packet are written together.
type jsonOut struct {
	mu  sync.Mutex
	w   io.Writer
	bw  *bufio.Writer
	enc *json.Encoder
	c   io.Closer // nil for stdout
}

func newJSONOut(w io.Writer, c io.Closer) *jsonOut {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &jsonOut{w: w, bw: bw, enc: enc, c: c}
}

var noAttrs = map[string]string{}

// writePacket writes one line per message of p and flushes them to the
// file, so that the packet can be acknowledged.
func (o *jsonOut) writePacket(agent []byte, p *frame.Packet) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	rec := record{Agent: string(agent), PacketID: p.ID, TraceID: string(p.TraceID)}
	for i := range p.Messages {
		m := &p.Messages[i]
		rec.TS = time.Unix(0, m.Timestamp).UTC().Format(time.RFC3339Nano)
		rec.Severity = m.Severity.String()
		rec.Facility = m.Facility
		rec.Host = string(m.Hostname)
		rec.App = string(m.App)
		rec.Msg = string(m.Body)
		rec.Attrs = noAttrs
		if len(m.Attrs) > 0 {
			rec.Attrs = make(map[string]string, len(m.Attrs))
			for _, a := range m.Attrs {
				rec.Attrs[string(a.Key)] = string(a.Value)
			}
		}
		if err := o.enc.Encode(&rec); err != nil {
			o.bw.Reset(o.w)
			return err
		}
	}
	if err := o.bw.Flush(); err != nil {
		// A bufio.Writer keeps its first error forever; start afresh so
		// that the packet's resend can succeed once the file is
		// writable again (a partial line may be left behind).
		o.bw.Reset(o.w)
		return err
	}
	return nil
}

func (o *jsonOut) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.bw.Flush()
	if o.c != nil {
		if cerr := o.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
