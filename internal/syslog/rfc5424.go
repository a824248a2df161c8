package syslog

// bom is the UTF-8 byte order mark RFC 5424 puts before a UTF-8 MSG.
const bom = "\xef\xbb\xbf"

// headerByte reports whether c may appear in an RFC 5424 header field.
// RFC 5424 allows PRINTUSASCII (33-126); bytes above 127 are accepted too
// so that UTF-8 hostnames and app names survive.
func headerByte(c byte) bool { return c > ' ' && c != 0x7f }

// sdNameByte reports whether c may appear in an SD-ID or PARAM-NAME.
func sdNameByte(c byte) bool {
	return c > ' ' && c < 0x7f && c != '=' && c != ']' && c != '"'
}

// field reads one header field at b[i:] that must be followed by a space
// (or, when last, by the end of b). It returns the field's bounds, empty
// for NILVALUE, and the index after the field and its space.
func field(b []byte, i int, last bool) (f0, f1, next int, ok bool) {
	j := i
	for j < len(b) && headerByte(b[j]) {
		j++
	}
	if j == i {
		return 0, 0, 0, false
	}
	switch {
	case j < len(b) && b[j] == ' ':
		next = j + 1
	case j == len(b) && last:
		next = j
	default:
		return 0, 0, 0, false
	}
	if j == i+1 && b[i] == '-' {
		return i, i, next, true
	}
	return i, j, next, true
}

// parse5424 parses b[i:] (just after the PRI, if any) as an RFC 5424
// message into m. It returns false, leaving m untouched, when the header
// is not well formed.
func (p *Parser) parse5424(b []byte, i int, m *Message) bool {
	// VERSION SP
	j := i
	for j < len(b) && j-i < 3 && isDigit(b[j]) {
		j++
	}
	if j == i || b[i] == '0' || j >= len(b) || b[j] != ' ' {
		return false
	}
	i = j + 1

	// TIMESTAMP SP
	var ts civil
	hasTS := false
	if i < len(b) && b[i] == '-' {
		i++
	} else {
		end, ok := parseISO(b, i, &ts)
		if !ok {
			return false
		}
		i, hasTS = end, true
	}
	if i >= len(b) || b[i] != ' ' {
		return false
	}
	i++

	// HOSTNAME SP APP-NAME SP PROCID SP MSGID
	h0, h1, i, ok := field(b, i, false)
	if !ok {
		return false
	}
	a0, a1, i, ok := field(b, i, false)
	if !ok {
		return false
	}
	p0, p1, i, ok := field(b, i, false)
	if !ok {
		return false
	}
	d0, d1, i, ok := field(b, i, true)
	if !ok {
		return false
	}

	if hasTS {
		m.Timestamp = ts.unixNano(p.loc, p.now)
	}
	m.Hostname = sub(b, h0, h1)
	m.App = sub(b, a0, a1)
	m.ProcID = sub(b, p0, p1)
	m.MsgID = sub(b, d0, d1)
	if p1 > p0 {
		p.addNamed("procid", p0, p1)
	}
	if d1 > d0 {
		p.addNamed("msgid", d0, d1)
	}

	// STRUCTURED-DATA [SP MSG]
	if i >= len(b) {
		return true
	}
	spans, scratch := len(p.spans), len(p.scratch)
	end := -1
	switch b[i] {
	case '-':
		end = i + 1
	case '[':
		end = p.parseSD(b, i)
	}
	if end < 0 || (end < len(b) && b[end] != ' ') {
		// Malformed or missing structured data: keep the header, drop any
		// SD attributes, and keep every byte from here on as the Body.
		p.spans, p.scratch = p.spans[:spans], p.scratch[:scratch]
		m.Body = b[i:]
		return true
	}
	if end < len(b) {
		end++ // SP before MSG
		if len(b)-end >= len(bom) && string(b[end:end+len(bom)]) == bom {
			end += len(bom)
		}
		m.Body = b[end:]
	}
	return true
}

// sub returns b[i:j], or nil when it is empty.
func sub(b []byte, i, j int) []byte {
	if i == j {
		return nil
	}
	return b[i:j:j]
}

// parseSD parses one or more SD-ELEMENTs at b[i:] (b[i] is '['), records
// their parameters as attributes, and returns the index after the last
// element, or -1 if they are malformed.
func (p *Parser) parseSD(b []byte, i int) int {
	for i < len(b) && b[i] == '[' {
		i++
		id0 := i
		for i < len(b) && sdNameByte(b[i]) {
			i++
		}
		if i == id0 {
			return -1
		}
		id1 := i
		for {
			if i >= len(b) {
				return -1
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ' ' {
				return -1
			}
			i++
			n0 := i
			for i < len(b) && sdNameByte(b[i]) {
				i++
			}
			n1 := i
			if n0 == n1 || i+1 >= len(b) || b[i] != '=' || b[i+1] != '"' {
				return -1
			}
			i += 2
			v0 := i
			escaped := false
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					escaped = true
					i++
				}
				i++
			}
			if i >= len(b) {
				return -1
			}
			v1 := i
			i++ // closing quote

			k0 := len(p.scratch)
			p.scratch = append(p.scratch, b[id0:id1]...)
			p.scratch = append(p.scratch, '.')
			p.scratch = append(p.scratch, b[n0:n1]...)
			k1 := len(p.scratch)
			if !escaped {
				p.addAttr(k0, k1, v0, v1, false)
				continue
			}
			s0 := len(p.scratch)
			p.scratch = unescape(p.scratch, b[v0:v1])
			p.addAttr(k0, k1, s0, len(p.scratch), true)
		}
	}
	return i
}

// unescape appends v to dst with the RFC 5424 PARAM-VALUE escapes \" \\
// and \] replaced by the escaped byte; any other backslash is kept.
func unescape(dst, v []byte) []byte {
	for k := 0; k < len(v); k++ {
		c := v[k]
		if c == '\\' && k+1 < len(v) {
			switch n := v[k+1]; n {
			case '"', '\\', ']':
				dst = append(dst, n)
				k++
				continue
			}
		}
		dst = append(dst, c)
	}
	return dst
}
