package syslog

import (
	"strconv"
	"time"

	"github.com/logdist/logdist/frame"
)

// Format is the syslog dialect a Parse call recognised.
type Format uint8

const (
	// Unparsed: neither RFC; the Message carries the raw input as Body.
	Unparsed Format = iota
	// RFC3164 is the BSD format, including the deviations in the package doc.
	RFC3164
	// RFC5424 is the IETF format.
	RFC5424
)

// String returns "unparsed", "rfc3164" or "rfc5424", suitable as a metric
// label.
func (f Format) String() string {
	switch f {
	case Unparsed:
		return "unparsed"
	case RFC3164:
		return "rfc3164"
	case RFC5424:
		return "rfc5424"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// Default PRI parts for messages without a usable PRI: user.notice, the PRI
// 13 that RFC 3164 section 4.3.3 assigns.
const (
	defaultFacility = 1
	defaultSeverity = 5
)

// Message is one parsed datagram. Byte fields alias the input or the
// Parser's scratch buffer: valid until the next Parse call on that Parser.
// Empty fields are nil or zero-length.
type Message struct {
	// Timestamp is the message time in Unix nanoseconds, or 0 when the
	// message has none usable (none, NILVALUE, or outside the years
	// 1678-2261 that int64 nanoseconds can hold); the caller then stamps the
	// receive time.
	Timestamp int64
	// Severity is 0 (emergency) to 7 (debug).
	Severity uint8
	// Facility is 0 (kern) to 23 (local7).
	Facility uint8
	// Hostname is HOSTNAME as sent, with or without a domain.
	Hostname []byte
	// App is RFC 5424 APP-NAME or the RFC 3164 tag without "[pid]:".
	App []byte
	// ProcID is RFC 5424 PROCID or the pid in an RFC 3164 "app[pid]:" tag.
	ProcID []byte
	// MsgID is RFC 5424 MSGID; always empty for RFC 3164.
	MsgID []byte
	// Body is MSG (RFC 5424, without a leading BOM), CONTENT after the tag
	// (RFC 3164), or the whole input (Unparsed).
	Body []byte
	// Attrs are "procid", "msgid" and the RFC 5424 structured data as
	// "SD-ID.PARAM-NAME" → unescaped value; see the package doc.
	Attrs []frame.Attr
}

// Config configures a Parser. The zero Config is valid and means UTC and
// the system clock.
type Config struct {
	// Location is the time zone of RFC 3164 timestamps and of RFC 3339
	// timestamps without an offset inside RFC 3164 messages; nil means UTC.
	Location *time.Location
	// Now returns the current time, used to infer the year of RFC 3164
	// timestamps, which carry none; nil means time.Now.
	Now func() time.Time
}

// Parser parses syslog messages into reusable storage. It is not safe for
// concurrent use.
type Parser struct {
	loc     *time.Location
	now     func() time.Time
	scratch []byte       // attribute keys and unescaped values
	attrs   []frame.Attr // backing array of Message.Attrs
	spans   []attrSpan   // attributes as offsets while scratch may still grow
}

// attrSpan locates one attribute: the key always in scratch, the value in
// scratch or in the input.
type attrSpan struct {
	k0, k1     int
	v0, v1     int
	valScratch bool
}

// NewParser returns a Parser configured by cfg.
func NewParser(cfg Config) *Parser {
	p := &Parser{loc: cfg.Location, now: cfg.Now}
	if p.loc == nil {
		p.loc = time.UTC
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// Parse parses one datagram (or one TCP syslog frame) b into m, overwriting
// every field, and reports its format. It never fails: input that parses as
// neither RFC becomes Unparsed with the whole input (trimmed of trailing
// newlines and NULs) as Body, severity notice (5), facility user (1). It
// never panics, whatever the input, and does not allocate once warm. The
// package doc lists the rules.
func (p *Parser) Parse(b []byte, m *Message) Format {
	b = trimTrailing(b)
	*m = Message{}
	p.scratch = p.scratch[:0]
	p.spans = p.spans[:0]

	var f Format
	if len(b) > 0 && b[0] == '<' {
		pri, n := parsePRI(b)
		if n == 0 {
			return p.unparsed(b, m)
		}
		m.Facility, m.Severity = pri/8, pri%8
		if p.parse5424(b, n, m) {
			f = RFC5424
		} else {
			p.parse3164(b, n, true, m)
			f = RFC3164
		}
	} else {
		m.Facility, m.Severity = defaultFacility, defaultSeverity
		switch {
		case p.parse5424(b, 0, m):
			f = RFC5424
		case p.parse3164(b, 0, false, m):
			f = RFC3164
		default:
			return p.unparsed(b, m)
		}
	}
	p.finishAttrs(b, m)
	return f
}

func (p *Parser) unparsed(b []byte, m *Message) Format {
	*m = Message{Severity: defaultSeverity, Facility: defaultFacility, Body: b}
	return Unparsed
}

// trimTrailing drops every trailing '\n', '\r' and NUL.
func trimTrailing(b []byte) []byte {
	n := len(b)
	for n > 0 && (b[n-1] == '\n' || b[n-1] == '\r' || b[n-1] == 0) {
		n--
	}
	return b[:n]
}

// parsePRI reads "<N>" at the start of b and returns N and the length of
// the PRI, or n = 0 when b has no valid PRI.
func parsePRI(b []byte) (pri uint8, n int) {
	v := 0
	i := 1
	for ; i < len(b) && i <= 4; i++ {
		c := b[i]
		if c == '>' {
			break
		}
		if c < '0' || c > '9' || i == 4 {
			return 0, 0
		}
		v = v*10 + int(c-'0')
	}
	digits := i - 1
	if i >= len(b) || digits == 0 || v > 191 || (digits > 1 && b[1] == '0') {
		return 0, 0
	}
	return uint8(v), i + 1
}

// addAttr records an attribute whose key is scratch[k0:k1] and whose value
// is scratch[v0:v1] or in[v0:v1].
func (p *Parser) addAttr(k0, k1, v0, v1 int, valScratch bool) {
	p.spans = append(p.spans, attrSpan{k0, k1, v0, v1, valScratch})
}

// addNamed records the attribute name → in[v0:v1].
func (p *Parser) addNamed(name string, v0, v1 int) {
	k0 := len(p.scratch)
	p.scratch = append(p.scratch, name...)
	p.addAttr(k0, len(p.scratch), v0, v1, false)
}

// finishAttrs turns the recorded spans into m.Attrs now that scratch has
// stopped growing.
func (p *Parser) finishAttrs(b []byte, m *Message) {
	if len(p.spans) == 0 {
		return
	}
	p.attrs = p.attrs[:0]
	for _, s := range p.spans {
		a := frame.Attr{Key: p.scratch[s.k0:s.k1:s.k1]}
		if s.valScratch {
			a.Value = p.scratch[s.v0:s.v1:s.v1]
		} else {
			a.Value = b[s.v0:s.v1:s.v1]
		}
		p.attrs = append(p.attrs, a)
	}
	m.Attrs = p.attrs
}
