package proxy

import (
	"strings"
	"testing"
)

func TestNextSyslogFrame(t *testing.T) {
	f := func(in string, max int, wantMsg string, wantN int, wantClipped, wantErr bool) {
		t.Helper()
		msg, n, clipped, err := nextSyslogFrame([]byte(in), max)
		if (err != nil) != wantErr || string(msg) != wantMsg || n != wantN || clipped != wantClipped {
			t.Fatalf("nextSyslogFrame(%q, %d) = %q, %d, %v, %v; want %q, %d, %v, err %v", in, max, msg, n, clipped, err, wantMsg, wantN, wantClipped, wantErr)
		}
	}
	// Octet counting.
	f("5 hello", 100, "hello", 7, false, false)
	f("5 hello6 world!", 100, "hello", 7, false, false)
	f("5 hel", 100, "", 0, false, false)      // needs more
	f("12", 100, "", 0, false, false)         // count not finished
	f("101 x", 100, "", 0, false, true)       // above max
	f("5xhello", 100, "", 0, false, true)     // no space after the count
	f("0 ", 100, "", 0, false, false)         // '0' is not a count start: newline framing, no LF yet
	f("3 a\nb", 100, "a\nb", 5, false, false) // octet counting carries LFs
	// Non-transparent (newline) framing.
	f("<13>hello\n<13>next", 100, "<13>hello", 10, false, false)
	f("<13>hello\r\n", 100, "<13>hello", 11, false, false)
	f("<13>hel", 100, "", 0, false, false)
	f("\n", 100, "", 1, false, false) // empty message: consumed
	f(strings.Repeat("x", 10), 10, strings.Repeat("x", 10), 10, true, false)
	f(strings.Repeat("x", 12)+"\n", 10, strings.Repeat("x", 10), 13, true, false)
	f("", 10, "", 0, false, false)
}

func FuzzNextSyslogFrame(f *testing.F) {
	for _, s := range []string{"5 hello", "<13>a\n", "12", "0 ", "3 a\nb", "\n\n", "99999999 x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, n, _, err := nextSyslogFrame(b, 64)
		if err != nil {
			return
		}
		if n < 0 || n > len(b) || len(msg) > 64 || len(msg) > n {
			t.Fatalf("frame %q n=%d of %d bytes", msg, n, len(b))
		}
	})
}
