package frame

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestRawSlack: Raw gives the zstd decoder room past the raw length
// (rawSlack) for frames that declare their content size. A frame that
// declares less than it holds — by less than the slack, or more — is
// still refused with a packet code, never returned; one that holds what
// it declares decodes.
func TestRawSlack(t *testing.T) {
	lim := DefaultLimits()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	content := bytes.Repeat([]byte("a log line with some words, 12345 "), 30) // 1,020 bytes
	z := enc.EncodeAll(content, nil)
	var zh zstd.Header
	if err := zh.Decode(z); err != nil || !zh.HasFCS || zh.FrameContentSize != uint64(len(content)) {
		t.Fatalf("encoder frame header: %+v %v", zh, err)
	}
	// The content size field of 256-65791 bytes is 2 bytes, minus 256,
	// after the descriptor and the window descriptor (when not a single
	// segment).
	if z[4]>>6 != 1 || z[4]&3 != 0 {
		t.Fatalf("frame header descriptor %#x: want a 2-byte content size and no dictionary", z[4])
	}
	off := 5
	if z[4]&0x20 == 0 {
		off++
	}
	lie := func(declared int) []byte {
		b := bytes.Clone(z)
		binary.LittleEndian.PutUint16(b[off:], uint16(declared-256))
		return b
	}
	dec := NewDecoder(lim)
	for _, tt := range []struct {
		name     string
		payload  []byte
		raw      int
		wantFail bool
	}{
		{"honest", z, len(content), false},
		{"declares 10 bytes less", lie(len(content) - 10), len(content) - 10, true},
		{"declares rawSlack-1 bytes less", lie(len(content) - rawSlack + 1), len(content) - rawSlack + 1, true},
		{"declares 200 bytes less", lie(len(content) - 200), len(content) - 200, true},
	} {
		for range 2 { // a fresh buffer, then the one the first call left
			h := Header(dataFrame(FlagZstd, 1, 1, tt.payload, uint32(tt.raw)))
			out, err := dec.Raw(h, tt.payload)
			if !tt.wantFail {
				if err != nil || !bytes.Equal(out, content) {
					t.Fatalf("%s: %d bytes, %v", tt.name, len(out), err)
				}
				continue
			}
			if err == nil || CodeOf(err).Fatal() {
				t.Fatalf("%s: Raw returned %d bytes, %v; want a packet error", tt.name, len(out), err)
			}
			t.Logf("%s: %v", tt.name, err)
		}
	}
}
