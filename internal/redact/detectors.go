package redact

import (
	"bytes"
	"net/netip"
	"regexp"
	"strings"
)

// detectors are the built-ins, in the order they apply: the ones whose
// matches contain others' (a bearer token holding a JWT, an e-mail
// address's domain holding digits) first.
var detectors = []rule{
	{
		name: "bearer",
		// A token has 8 or more characters, one at least a digit or a
		// symbol: "the bearer of bad news" is not one.
		re:  regexp.MustCompile(`(?i)\bbearer[ \t]+[A-Za-z0-9\-._~+/]*[0-9\-._~+/][A-Za-z0-9\-._~+/]*=*`),
		pre: func(b []byte) bool { return containsFold(b, "bearer") },
		valid: func(m []byte) bool {
			i := bytes.LastIndexAny(m, " \t")
			return len(bytes.TrimRight(m[i+1:], "=")) >= 8
		},
	},
	{
		name: "jwt",
		re:   regexp.MustCompile(`\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*`),
		pre:  func(b []byte) bool { return bytes.Contains(b, []byte("eyJ")) },
	},
	{
		name: "aws-key",
		re:   regexp.MustCompile(`\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b`),
		pre:  hasAWSKeyPrefix,
	},
	{
		name: "aws-secret",
		// aws_secret_access_key = ..., AWS_SECRET_ACCESS_KEY: ...,
		// "SecretAccessKey": "...", with the 40 characters of a key.
		re:  regexp.MustCompile(`(?i)\b(?:aws_?)?secret_?access_?key["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}\b`),
		pre: func(b []byte) bool { return containsFold(b, "secret") },
	},
	{name: "email", find: findEmail, pre: func(b []byte) bool { return bytes.IndexByte(b, '@') >= 0 }},
	{name: "credit-card", find: findCard, pre: func(b []byte) bool { return digitRun(b, 13) }},
	{name: "ipv6", find: findIPv6, pre: func(b []byte) bool { return bytes.Count(b, []byte(":")) >= 2 }},
	{name: "ipv4", find: findIPv4, pre: func(b []byte) bool { return bytes.IndexByte(b, '.') >= 0 }},
}

func init() {
	for i := range detectors {
		detectors[i].replace = []byte("[REDACTED:" + detectors[i].name + "]")
		detectors[i].literal = true
	}
}

func builtinNames() string {
	names := make([]string, len(detectors))
	for i := range detectors {
		names[i] = detectors[i].name
	}
	return strings.Join(names, ", ")
}

// hasAWSKeyPrefix reports whether b holds the start of an AWS access key
// id (AKIA..., ASIA... and the other unique-id prefixes).
func hasAWSKeyPrefix(b []byte) bool {
	for i := 0; ; i++ {
		k := bytes.IndexByte(b[i:], 'A')
		if k < 0 || i+k+4 > len(b) {
			return false
		}
		i += k
		switch string(b[i+1 : i+4]) {
		case "KIA", "SIA", "GPA", "IDA", "ROA", "NPA", "NVA", "IPA":
			return true
		}
	}
}

// containsFold reports whether b contains the lower-case ASCII word w in
// any case, without allocating. Candidates are found by the first
// letter, in either case, with IndexByte (vectorized).
func containsFold(b []byte, w string) bool {
	return containsFoldFrom(b, w, w[0]) || containsFoldFrom(b, w, w[0]-0x20)
}

func containsFoldFrom(b []byte, w string, first byte) bool {
	for i := 0; ; i++ {
		k := bytes.IndexByte(b[i:], first)
		if k < 0 || i+k+len(w) > len(b) {
			return false
		}
		i += k
		j := 1
		for j < len(w) && b[i+j]|0x20 == w[j] {
			j++
		}
		if j == len(w) {
			return true
		}
	}
}

// digitRun reports whether b has n digits in a row, spaces and dashes
// between them allowed.
func digitRun(b []byte, n int) bool {
	run := 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if run++; run >= n {
				return true
			}
		case c == ' ' || c == '-':
		default:
			run = 0
		}
	}
	return false
}

// luhn checks a card number (digits with spaces or dashes) of 13 to 19
// digits.
func luhn(b []byte) bool {
	sum, n, double := 0, 0, false
	for i := len(b) - 1; i >= 0; i-- {
		c := b[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
		n++
	}
	return n >= 13 && n <= 19 && sum%10 == 0
}

// The address and number detectors scan by hand rather than by regular
// expression: Go's regexp needs its slow engine for word boundaries, and
// these run on nearly every message (most hold a dot, many two colons).
// Each finds the next candidate token and checks it without allocating.

// wordByte is a byte that continues an identifier or an address: a match
// next to one is part of something else (std::vector, 10.0.0.1.5).
func wordByte(c byte) bool {
	return c == '_' || c == '.' || c == ':' || isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// token returns the end of the run of bytes from i that in accepts, and
// that end with a final dot dropped (the end of a sentence).
func token(b []byte, i int, in func(byte) bool) (end, trimmed int) {
	j := i
	for j < len(b) && in(b[j]) {
		j++
	}
	e := j
	for e > i && b[e-1] == '.' {
		e--
	}
	return j, e
}

func findIPv4(b []byte, from int) (int, int) {
	for i := from; i < len(b); i++ {
		// An address starts after a non-word byte or a colon (key:10.0.0.1)
		// and ends before one or before a port (10.0.0.1:8080).
		if !isDigit(b[i]) || i > 0 && wordByte(b[i-1]) && b[i-1] != ':' {
			continue
		}
		j, e := token(b, i, func(c byte) bool { return isDigit(c) || c == '.' })
		if (j == len(b) || !wordByte(b[j]) && b[j] != '%' || e < j || b[j] == ':' && j+1 < len(b) && isDigit(b[j+1])) && isIPv4(b[i:e]) {
			return i, e
		}
		i = j
	}
	return -1, -1
}

// isIPv4 checks dotted-quad text: four parts of 1-3 digits, each ≤ 255.
func isIPv4(b []byte) bool {
	parts, v, n := 0, 0, 0
	for k := 0; k <= len(b); k++ {
		if k == len(b) || b[k] == '.' {
			if n == 0 || v > 255 {
				return false
			}
			parts++
			v, n = 0, 0
			continue
		}
		if !isDigit(b[k]) || n == 3 {
			return false
		}
		v, n = v*10+int(b[k]-'0'), n+1
	}
	return parts == 4
}

func findIPv6(b []byte, from int) (int, int) {
	in := func(c byte) bool { return isHex(c) || c == ':' || c == '.' }
	for i := from; i < len(b); i++ {
		if !in(b[i]) || i > 0 && (wordByte(b[i-1]) || b[i-1] == '%') {
			continue
		}
		j, e := token(b, i, in)
		if j < len(b) && b[j] == '%' { // a zone: fe80::1%eth0
			z := j + 1
			for z < len(b) && (isDigit(b[z]) || b[z] >= 'a' && b[z] <= 'z' || b[z] >= 'A' && b[z] <= 'Z') {
				z++
			}
			if z > j+1 {
				j, e = z, z
			}
		}
		if (j == len(b) || !wordByte(b[j]) || e < j) && maybeIPv6(b[i:e]) && hasDigit(b[i:e]) {
			if a, err := netip.ParseAddr(string(b[i:e])); err == nil && a.Is6() {
				return i, e
			}
		}
		i = j
	}
	return -1, -1
}

// hasDigit: an address without one (Cafe::Bad) is far more likely a name.
func hasDigit(b []byte) bool { return bytes.ContainsAny(b, "0123456789") }

// maybeIPv6 is a cheap test before parsing: an address has "::" or seven
// colons (six before a dotted quad), and at most 45 bytes before a zone.
// Times (12:30:45) fail it.
func maybeIPv6(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	c := bytes.Count(b, []byte(":"))
	return bytes.Contains(b, []byte("::")) || c == 7 || c == 6 && bytes.IndexByte(b, '.') > 0
}

func findEmail(b []byte, from int) (int, int) {
	lo := from // never reach back into what came before (a match already made)
	local := func(c byte) bool {
		return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("._%+-", c) >= 0
	}
	domain := func(c byte) bool {
		return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-'
	}
	for from < len(b) {
		at := bytes.IndexByte(b[from:], '@')
		if at < 0 {
			return -1, -1
		}
		at += from
		s := at
		for s > lo && local(b[s-1]) {
			s--
		}
		_, e := token(b, at+1, domain)
		for e > at+1 && b[e-1] == '-' {
			e--
		}
		if s < at && validDomain(b[at+1:e]) {
			return s, e
		}
		from = at + 1
	}
	return -1, -1
}

// validDomain wants a dot, no empty label, and a top-level label of two
// or more letters.
func validDomain(d []byte) bool {
	dot := bytes.LastIndexByte(d, '.')
	if dot <= 0 || len(d)-dot-1 < 2 || bytes.Contains(d, []byte("..")) || d[0] == '.' {
		return false
	}
	for _, c := range d[dot+1:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// findCard finds a card number standing alone: 13 to 19 digits, single
// spaces or dashes between groups allowed, starting with a card network's
// first digit (2-6: Mastercard, Amex and Diners, Visa, Mastercard,
// Discover; a 13-digit millisecond timestamp starts with 1) and passing the
// Luhn check. Where the run goes on past a group ("4111 1111 1111 1111
// 12 26"), the longest prefix of whole groups that passes is the number.
func findCard(b []byte, from int) (int, int) {
	for i := from; i < len(b); i++ {
		if b[i] < '2' || b[i] > '6' || i > 0 && (wordByte(b[i-1]) && b[i-1] != '.' || b[i-1] == '.' && i > 1 && isDigit(b[i-2])) {
			if isDigit(b[i]) {
				for i+1 < len(b) && isDigit(b[i+1]) {
					i++
				}
			}
			continue
		}
		// Walk the run; at the end of each group, remember the longest
		// prefix that is a card number.
		best, digits, end := -1, 0, i
		for k := i; k < len(b); k++ {
			if isDigit(b[k]) {
				digits++
				end = k + 1
				if digits > 19 {
					break
				}
				if k+1 == len(b) || !isDigit(b[k+1]) { // a group ends
					if digits >= 13 && standsAlone(b, k+1) && luhn(b[i:k+1]) {
						best = k + 1
					}
				}
				continue
			}
			if (b[k] == ' ' || b[k] == '-') && k+1 < len(b) && isDigit(b[k+1]) && isDigit(b[k-1]) {
				continue
			}
			break
		}
		if best > 0 {
			return i, best
		}
		i = end
	}
	return -1, -1
}

// standsAlone reports whether a number ending at e is not part of a longer
// word: the end, a non-word byte, a space or dash before more digits, or a
// final dot.
func standsAlone(b []byte, e int) bool {
	return e == len(b) || !wordByte(b[e]) || b[e] == '.' && (e+1 == len(b) || !isDigit(b[e+1]))
}
