package frame

import (
	"errors"
	"fmt"
)

// MaxControlPayload bounds the payload of every frame that is not DATA
// (HELLO, WELCOME, BUSY, ERROR, GOAWAY). It is fixed by the protocol so that
// an unauthenticated peer can make the receiver buffer at most this much.
const MaxControlPayload = 4096

// HardMaxFrame is the largest MaxFrame or MaxRaw a Limits may set (256 MiB).
const HardMaxFrame = 256 << 20

// Limits bounds what a receiver accepts. Every limit is checked before the
// memory it protects is allocated.
type Limits struct {
	// MaxFrame is the largest DATA payload on the wire, in bytes.
	MaxFrame uint32
	// MaxRaw is the largest decompressed DATA payload, in bytes (zip-bomb
	// bound). Also applies to uncompressed payloads.
	MaxRaw uint32
	// MaxMessages is the largest number of messages in one packet.
	MaxMessages uint32
	// MaxField is the longest agent id, trace id, hostname, app name and
	// attribute key, in bytes.
	MaxField uint16
	// MaxBody is the longest message body and attribute value, in bytes.
	MaxBody uint32
	// MaxAttrs is the largest number of key/value attributes on one message.
	MaxAttrs uint16
}

// DefaultLimits returns the limits logdist and the libraries use unless
// configured otherwise: 1 MiB frames, 4 MiB decompressed, 10,000 messages,
// 255-byte names, 64 KiB bodies, 64 attributes.
func DefaultLimits() Limits {
	return Limits{
		MaxFrame:    1 << 20,
		MaxRaw:      4 << 20,
		MaxMessages: 10000,
		MaxField:    255,
		MaxBody:     64 << 10,
		MaxAttrs:    64,
	}
}

// ErrBadLimits is returned by Limits.Validate.
var ErrBadLimits = errors.New("frame: invalid limits")

// Validate reports a limit that is zero or above its hard maximum.
func (l *Limits) Validate() error {
	switch {
	case l.MaxFrame < MaxControlPayload || l.MaxFrame > HardMaxFrame:
		return fmt.Errorf("%w: max frame %d not in [%d, %d]", ErrBadLimits, l.MaxFrame, MaxControlPayload, HardMaxFrame)
	case l.MaxRaw < l.MaxFrame || l.MaxRaw > HardMaxFrame:
		return fmt.Errorf("%w: max raw %d not in [max frame %d, %d]", ErrBadLimits, l.MaxRaw, l.MaxFrame, HardMaxFrame)
	case l.MaxMessages == 0:
		return fmt.Errorf("%w: max messages must be at least 1", ErrBadLimits)
	case l.MaxField == 0:
		return fmt.Errorf("%w: max field must be at least 1", ErrBadLimits)
	case l.MaxBody == 0:
		return fmt.Errorf("%w: max body must be at least 1", ErrBadLimits)
	}
	return nil
}
