package frame

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// sentinels lists every *Error the package exports with the code it must
// carry. A new sentinel must be added here (TestSentinelsListed checks the
// count against errors.go's declarations by name).
var sentinels = []struct {
	name string
	err  *Error
	code Code
}{
	{"ErrBadMagic", ErrBadMagic, CodeBadMagic},
	{"ErrTLSOnPlaintext", ErrTLSOnPlaintext, CodeBadMagic},
	{"ErrHTTPOnFramePort", ErrHTTPOnFramePort, CodeBadMagic},
	{"ErrBadVersion", ErrBadVersion, CodeBadVersion},
	{"ErrBadType", ErrBadType, CodeBadType},
	{"ErrBadFlags", ErrBadFlags, CodeProtocol},
	{"ErrReserved", ErrReserved, CodeProtocol},
	{"ErrFrameTooLarge", ErrFrameTooLarge, CodeFrameTooLarge},
	{"ErrControlTooLarge", ErrControlTooLarge, CodeFrameTooLarge},
	{"ErrBadLength", ErrBadLength, CodeProtocol},
	{"ErrBadChecksum", ErrBadChecksum, CodeBadChecksum},
	{"ErrBadHandshake", ErrBadHandshake, CodeBadHandshake},
	{"ErrBadSack", ErrBadSack, CodeProtocol},
	{"ErrTruncated", ErrTruncated, CodeMalformed},
	{"ErrTrailing", ErrTrailing, CodeMalformed},
	{"ErrTooManyMessages", ErrTooManyMessages, CodeTooManyMessages},
	{"ErrCountMismatch", ErrCountMismatch, CodeTooManyMessages},
	{"ErrTooManyAttrs", ErrTooManyAttrs, CodeTooManyMessages},
	{"ErrFieldTooLong", ErrFieldTooLong, CodeFieldTooLong},
	{"ErrBadSeverity", ErrBadSeverity, CodeMalformed},
	{"ErrBadCompression", ErrBadCompression, CodeBadCompression},
	{"ErrRawTooLarge", ErrRawTooLarge, CodeRawTooLarge},
	{"ErrRawMismatch", ErrRawMismatch, CodeRawTooLarge},
	{"ErrUnknownDictionary", ErrUnknownDictionary, CodeUnknownDict},
}

func TestSentinelCodes(t *testing.T) {
	seen := map[*Error]bool{}
	for _, s := range sentinels {
		if seen[s.err] {
			t.Errorf("%s listed twice", s.name)
		}
		seen[s.err] = true
		if s.err.Code != s.code || CodeOf(s.err) != s.code {
			t.Errorf("%s: code %v, want %v", s.name, s.err.Code, s.code)
		}
		if strings.HasPrefix(s.err.Code.String(), "code_0x") {
			t.Errorf("%s: code %#x has no name", s.name, uint16(s.err.Code))
		}
		if !strings.HasPrefix(s.err.Error(), "frame: ") {
			t.Errorf("%s: message %q lacks the package prefix", s.name, s.err.Error())
		}
		wrapped := fmt.Errorf("cannot decode packet from 10.0.0.1: %w", s.err)
		if CodeOf(wrapped) != s.code || !errors.Is(wrapped, s.err) {
			t.Errorf("%s: wrapped: code %v", s.name, CodeOf(wrapped))
		}
		if CodeOf(fmt.Errorf("outer: %w", wrapped)) != s.code {
			t.Errorf("%s: wrapped twice", s.name)
		}
		if CodeOf(errors.Join(io.EOF, wrapped)) != s.code {
			t.Errorf("%s: joined", s.name)
		}
	}
}

// TestSentinelsListed keeps the table above complete.
func TestSentinelsListed(t *testing.T) {
	src := readSource(t, "errors.go")
	n := strings.Count(src, " = &Error{")
	if n != len(sentinels) {
		t.Fatalf("errors.go declares %d *Error sentinels, the test lists %d", n, len(sentinels))
	}
}

func TestCodeFatal(t *testing.T) {
	fatal := []Code{CodeProtocol, CodeBadMagic, CodeBadVersion, CodeBadType, CodeFrameTooLarge, CodeBadChecksum,
		CodeBadHandshake, CodeAuth, CodeHandshakeTimeout, CodeIdleTimeout, CodeWindowExceeded, CodeBadSequence,
		CodeShutdown, CodeInternal, CodeOverloaded}
	packet := []Code{CodeMalformed, CodeTooManyMessages, CodeFieldTooLong, CodeBadCompression, CodeRawTooLarge, CodeRejected, CodeUnknownDict}
	for _, c := range fatal {
		if !c.Fatal() || c >= 0x100 {
			t.Errorf("%v (%#x) should be fatal", c, uint16(c))
		}
	}
	for _, c := range packet {
		if c.Fatal() || c < 0x100 {
			t.Errorf("%v (%#x) should be per-packet", c, uint16(c))
		}
	}
	if len(fatal)+len(packet) != len(codeNames) {
		t.Errorf("%d codes named, %d classified", len(codeNames), len(fatal)+len(packet))
	}
	names := map[string]bool{}
	for c, name := range codeNames {
		if names[name] {
			t.Errorf("name %q used twice", name)
		}
		names[name] = true
		if c.String() != name {
			t.Errorf("%#x: %q", uint16(c), c.String())
		}
	}
	if s := Code(0x4242).String(); s != "code_0x4242" {
		t.Errorf("unknown code: %q", s)
	}
	// The header errors that are per-packet leave the stream in sync (the
	// length is trustworthy); all others are fatal.
	for _, s := range sentinels {
		switch s.err {
		case ErrTooManyMessages, ErrCountMismatch, ErrRawTooLarge:
			if s.code.Fatal() {
				t.Errorf("%s is fatal", s.name)
			}
		}
	}
}

func TestCodeOfOther(t *testing.T) {
	f := func(err error, want Code) {
		t.Helper()
		if got := CodeOf(err); got != want {
			t.Errorf("CodeOf(%v) = %v, want %v", err, got, want)
		}
	}
	f(io.EOF, CodeInternal)
	f(ErrShortHeader, CodeInternal)
	f(ErrBadLimits, CodeInternal)
	f(&Error{Code: CodeAuth, Msg: "frame: unknown token"}, CodeAuth)
	f(fmt.Errorf("x: %w", &Error{Code: CodeRejected, Msg: "no"}), CodeRejected)
}

func TestRemoteError(t *testing.T) {
	f := func(e *RemoteError, want string) {
		t.Helper()
		if e.Error() != want {
			t.Errorf("%q, want %q", e.Error(), want)
		}
	}
	f(&RemoteError{Seq: 5, Code: CodeFieldTooLong, Reason: "hostname"}, "frame: peer rejected packet seq 5: field_too_long: hostname")
	f(&RemoteError{Code: CodeAuth, Reason: "unknown token"}, "frame: peer closed the connection: auth: unknown token")
}
