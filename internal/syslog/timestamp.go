package syslog

import "time"

// Years whose instants fit Unix nanoseconds in an int64 (1677-09-21 to
// 2262-04-11), rounded inwards to whole years.
const (
	minYear = 1678
	maxYear = 2261
)

// civil is a parsed wall-clock time, possibly with a UTC offset.
type civil struct {
	year, month, day int
	hour, min, sec   int
	nsec             int
	zone             bool // an offset (or Z) was given
	offset           int  // seconds east of UTC when zone
	yearKnown        bool // false for BSD timestamps
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits2 reads two decimal digits at b[i:i+2].
func digits2(b []byte, i int) (int, bool) {
	if i+1 >= len(b) || !isDigit(b[i]) || !isDigit(b[i+1]) {
		return 0, false
	}
	return int(b[i]-'0')*10 + int(b[i+1]-'0'), true
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(month, year int) int {
	switch month {
	case 2:
		if isLeap(year) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// parseClock reads "hh:mm:ss" and an optional ".fraction" at b[i:].
func parseClock(b []byte, i int, c *civil) (end int, ok bool) {
	var ok1, ok2, ok3 bool
	c.hour, ok1 = digits2(b, i)
	c.min, ok2 = digits2(b, i+3)
	c.sec, ok3 = digits2(b, i+6)
	if !ok1 || !ok2 || !ok3 || b[i+2] != ':' || b[i+5] != ':' ||
		c.hour > 23 || c.min > 59 || c.sec > 60 {
		return 0, false
	}
	i += 8
	if i+1 < len(b) && b[i] == '.' && isDigit(b[i+1]) {
		i++
		scale := 100000000
		for ; i < len(b) && isDigit(b[i]); i++ {
			c.nsec += int(b[i]-'0') * scale // digits past the 9th add 0
			scale /= 10
		}
	}
	return i, true
}

// parseISO reads an RFC 3339 timestamp at b[i:]: YYYY-MM-DDThh:mm:ss, an
// optional fraction, and an optional Z or ±hh:mm (or ±hhmm).
func parseISO(b []byte, i int, c *civil) (end int, ok bool) {
	if i+19 > len(b) || b[i+4] != '-' || b[i+7] != '-' || (b[i+10] != 'T' && b[i+10] != 't') {
		return 0, false
	}
	hi, ok1 := digits2(b, i)
	lo, ok2 := digits2(b, i+2)
	month, ok3 := digits2(b, i+5)
	day, ok4 := digits2(b, i+8)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return 0, false
	}
	year := hi*100 + lo
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) {
		return 0, false
	}
	c.year, c.month, c.day, c.yearKnown = year, month, day, true
	i, ok = parseClock(b, i+11, c)
	if !ok {
		return 0, false
	}
	if i < len(b) {
		switch b[i] {
		case 'Z', 'z':
			c.zone = true
			i++
		case '+', '-':
			oh, okh := digits2(b, i+1)
			j := i + 3
			if j < len(b) && b[j] == ':' {
				j++
			}
			om, okm := digits2(b, j)
			if !okh || !okm || oh > 23 || om > 59 {
				return 0, false
			}
			c.zone = true
			c.offset = oh*3600 + om*60
			if b[i] == '-' {
				c.offset = -c.offset
			}
			i = j + 2
		}
	}
	return i, true
}

// months maps the lowercase three-letter month names to 1-12.
var months = [...]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// parseBSD reads an RFC 3164 timestamp at b[i:]: "Mmm dd hh:mm:ss" with the
// day space- or zero-padded or a single digit, an optional year after the
// day, and an optional fraction.
func parseBSD(b []byte, i int, c *civil) (end int, ok bool) {
	if i+14 > len(b) || b[i+3] != ' ' {
		return 0, false
	}
	m0, m1, m2 := b[i]|0x20, b[i+1]|0x20, b[i+2]|0x20
	c.month = 0
	for k, name := range months {
		if name[0] == m0 && name[1] == m1 && name[2] == m2 {
			c.month = k + 1
			break
		}
	}
	if c.month == 0 {
		return 0, false
	}
	i += 4
	switch {
	case b[i] == ' ' && isDigit(b[i+1]): // "Mar  1"
		c.day = int(b[i+1] - '0')
		i += 2
	case isDigit(b[i]) && isDigit(b[i+1]): // "Mar 01", "Mar 11"
		c.day = int(b[i]-'0')*10 + int(b[i+1]-'0')
		i += 2
	case isDigit(b[i]) && b[i+1] == ' ': // "Mar 1"
		c.day = int(b[i] - '0')
		i++
	default:
		return 0, false
	}
	// Without a year, Feb 29 must stay possible.
	if c.day < 1 || c.day > daysIn(c.month, 2000) || i >= len(b) || b[i] != ' ' {
		return 0, false
	}
	i++
	// "Mmm dd yyyy hh:mm:ss" (Cisco "service timestamps ... year").
	if i+5 <= len(b) && b[i+4] == ' ' {
		hi, ok1 := digits2(b, i)
		lo, ok2 := digits2(b, i+2)
		if ok1 && ok2 {
			c.year, c.yearKnown = hi*100+lo, true
			if c.day > daysIn(c.month, c.year) {
				return 0, false
			}
			i += 5
		}
	}
	if i+8 > len(b) {
		return 0, false
	}
	return parseClock(b, i, c)
}

// unixNano converts c to Unix nanoseconds, reading it in loc when it has
// no offset and taking the year closest to now when it has no year. It
// returns 0 for instants int64 nanoseconds cannot hold.
func (c *civil) unixNano(loc *time.Location, now func() time.Time) int64 {
	if !c.yearKnown {
		n := now().In(loc)
		c.year = n.Year()
		t := time.Date(c.year, time.Month(c.month), c.day, c.hour, c.min, c.sec, c.nsec, loc)
		// Senders' clocks run a little ahead at most; a log is late by
		// much more. So the year puts the time no more than 31 days
		// after now and no more than 334 days before.
		const ahead, behind = 31 * 24 * time.Hour, 334 * 24 * time.Hour
		switch d := t.Sub(n); {
		case d > ahead:
			c.year--
		case d < -behind:
			c.year++
		default:
			return rangeChecked(c.year, t.UnixNano())
		}
	}
	if c.year < minYear || c.year > maxYear {
		return 0
	}
	if !c.zone {
		return time.Date(c.year, time.Month(c.month), c.day, c.hour, c.min, c.sec, c.nsec, loc).UnixNano()
	}
	secs := daysFromCivil(c.year, c.month, c.day)*86400 +
		int64(c.hour*3600+c.min*60+c.sec-c.offset)
	return secs*1e9 + int64(c.nsec)
}

func rangeChecked(year int, ns int64) int64 {
	if year < minYear || year > maxYear {
		return 0
	}
	return ns
}

// daysFromCivil returns the number of days from 1970-01-01 to y-m-d in the
// proleptic Gregorian calendar (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
