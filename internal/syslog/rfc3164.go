package syslog

import "time"

// maxCiscoPrefixes bounds the "word: " prefixes Cisco IOS puts before the
// timestamp: message counter, sequence number, origin hostname.
const maxCiscoPrefixes = 3

// parse3164 parses b[i:] (just after the PRI, or the whole input when
// hasPRI is false) as an RFC 3164 message into m. Without a PRI it returns
// false unless a timestamp is found; with one it always succeeds.
func (p *Parser) parse3164(b []byte, i int, hasPRI bool, m *Message) bool {
	for i < len(b) && b[i] == ' ' {
		i++
	}
	start := i
	host0, host1 := 0, 0
	ts, end, colon, ok := p.timestamp(b, i, false)
	// Cisco IOS: "NNN: ", "NNN: NNN: ", "name: " before the timestamp.
	for k, j := 0, i; !ok && k < maxCiscoPrefixes; k++ {
		w0 := j
		digits := true
		for j < len(b) && b[j] != ' ' && b[j] != ':' {
			digits = digits && isDigit(b[j])
			j++
		}
		if j+1 >= len(b) || b[j] != ':' || b[j+1] != ' ' {
			break
		}
		if !digits {
			if host1 > host0 {
				break // one hostname at most
			}
			host0, host1 = w0, j
		}
		for j++; j < len(b) && b[j] == ' '; j++ {
		}
		ts, end, colon, ok = p.timestamp(b, j, true)
	}
	if !ok {
		if !hasPRI {
			return false
		}
		// RFC 3164 section 4.3.2: no valid TIMESTAMP, so the whole rest is
		// the CONTENT.
		m.Body = b[start:]
		return true
	}
	m.Timestamp = ts
	m.Hostname = sub(b, host0, host1)
	i = end
	for i < len(b) && b[i] == ' ' {
		i++
	}

	// HOSTNAME, unless Cisco's "timestamp:" says there is none, or the word
	// is shaped like a tag (the sender left the hostname out).
	if !colon && m.Hostname == nil {
		j := i
		tagLike, ascii := false, true
		for j < len(b) && b[j] != ' ' {
			tagLike = tagLike || b[j] == '['
			ascii = ascii && b[j] > ' ' && b[j] < 0x7f
			j++
		}
		k := j
		for k < len(b) && b[k] == ' ' {
			k++
		}
		// A last word alone is the message, not a hostname. A lone "-" is
		// the sender saying it has none (RFC 5424's NILVALUE, which some
		// senders also put in BSD messages).
		if j > i && k < len(b) && ascii && !tagLike && b[j-1] != ':' {
			if j-i > 1 || b[i] != '-' {
				m.Hostname = b[i:j:j]
			}
			i = k
		}
	}

	a0, a1, p0, p1, next, ok := tag(b, i)
	// Cisco ASA puts a lone ":" between hostname and tag.
	if !ok && m.Hostname != nil && i+1 < len(b) && b[i] == ':' && b[i+1] == ' ' {
		a0, a1, p0, p1, next, ok = tag(b, i+2)
	}
	if ok {
		m.App = b[a0:a1:a1]
		m.ProcID = sub(b, p0, p1)
		if p1 > p0 {
			p.addNamed("procid", p0, p1)
		}
		i = next
	}
	m.Body = b[i:]
	return true
}

// tag reads "app[pid]: " or "app: " at b[i:], followed by at least one
// more byte (a tag needs a message after it: "app: " alone is message
// text). It returns the bounds of app and pid and the index after ": ".
func tag(b []byte, i int) (a0, a1, p0, p1, next int, ok bool) {
	a0 = i
	j := i
	for j < len(b) && b[j] > ' ' && b[j] < 0x7f && b[j] != '[' && b[j] != ':' {
		j++
	}
	a1 = j
	if j == a0 {
		return
	}
	if j < len(b) && b[j] == '[' {
		p0 = j + 1
		for j = p0; j < len(b) && b[j] != ']' && b[j] != '[' && b[j] > ' ' && b[j] != 0x7f; j++ {
		}
		if j >= len(b) || b[j] != ']' {
			return 0, 0, 0, 0, 0, false
		}
		p1 = j
		j++
	}
	if j+2 < len(b) && b[j] == ':' && b[j+1] == ' ' {
		return a0, a1, p0, p1, j + 2, true
	}
	return 0, 0, 0, 0, 0, false
}

// timestamp reads an RFC 3164 timestamp at b[i:], as described in the
// package doc, and returns it in Unix nanoseconds (0 when unusable), the
// index after it, and whether a Cisco-style ':' followed it. The
// timestamp must be followed by a space, ':' or the end of b. A time-zone
// abbreviation is read only from Cisco: after a counter or origin
// hostname (cisco), or a '*' or '.' marker; elsewhere "ABC:" is a tag.
func (p *Parser) timestamp(b []byte, i int, cisco bool) (ns int64, end int, colon, ok bool) {
	if i < len(b) && (b[i] == '*' || b[i] == '.') {
		i++
		cisco = true
	}
	var c civil
	if i < len(b) && isDigit(b[i]) {
		end, ok = parseISO(b, i, &c)
	} else {
		end, ok = parseBSD(b, i, &c)
	}
	if !ok {
		return 0, 0, false, false
	}
	loc := p.loc
	// A time-zone abbreviation and a colon: " UTC:" (Cisco).
	if cisco && end+2 < len(b) && b[end] == ' ' && isUpper(b[end+1]) {
		j := end + 1
		for j < len(b) && j-end <= 5 && isUpper(b[j]) {
			j++
		}
		if j < len(b) && b[j] == ':' {
			if z := string(b[end+1 : j]); z == "UTC" || z == "GMT" {
				loc = time.UTC
			}
			end = j
		}
	}
	if end < len(b) {
		switch b[end] {
		case ':':
			colon = true
			end++
		case ' ':
		default:
			return 0, 0, false, false
		}
	}
	return c.unixNano(loc, p.now), end, colon, true
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
