package frame

import (
	"bufio"
	"hash/crc32"
	"io"
	"slices"
)

// Reader reads frames from a byte stream (a net.Conn). It checks each header
// with ParseHeader before reading the payload, so a length above the limits
// costs no memory, grows its payload buffer only as payload bytes arrive,
// and verifies the checksum. Not safe for concurrent use.
type Reader struct {
	r      *bufio.Reader
	lim    *Limits
	header [HeaderSize]byte
	buf    []byte
	// partial is set when the last Next failed after reading part of a
	// frame.
	partial bool
	admit   func(Header) error
}

// SetAdmit has Next call admit with every header that passed ParseHeader,
// before any of its payload is read; an error from it is returned by Next
// as is, and the payload is left unread. A protocol session uses it to
// refuse a frame its state does not allow (a DATA before HELLO, say)
// without buffering what the header announces.
func (r *Reader) SetAdmit(admit func(Header) error) { r.admit = admit }

// NewReader returns a Reader over r enforcing lim. It buffers reads in
// 64 KiB chunks, so many small frames cost one read system call.
func NewReader(r io.Reader, lim *Limits) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), lim: lim}
}

// Next reads the next frame. The returned header and payload are valid
// until the next call to Next. Errors are io.EOF at a clean frame boundary,
// io.ErrUnexpectedEOF inside a frame, a read error, or one of this
// package's *Error values (whose code belongs in the ERROR sent back).
//
// After an *Error with a fatal code the stream is out of sync: send ERROR
// seq 0 and close. An *Error with a per-packet code (CodeOf(err).Fatal() is
// false: a DATA header over MaxRaw or MaxMessages, or whose count its raw
// length cannot hold) comes with the frame's header, its payload already
// skipped (and its checksum verified): answer ERROR with h.Seq() and call
// Next again.
func (r *Reader) Next() (Header, []byte, error) {
	r.partial = false
	if n, err := io.ReadFull(r.r, r.header[:]); err != nil {
		r.partial = n > 0
		return nil, nil, err
	}
	h, err := ParseHeader(r.header[:], r.lim)
	if err != nil && CodeOf(err).Fatal() {
		return nil, nil, err
	}
	if r.admit != nil {
		if aerr := r.admit(Header(r.header[:])); aerr != nil {
			return nil, nil, aerr
		}
	}
	if err != nil {
		h = Header(r.header[:])
		if serr := r.skip(h); serr != nil {
			r.partial = true
			return nil, nil, serr
		}
		return h, nil, err
	}
	payload, err := r.readPayload(int(h.PayloadLen()))
	if err != nil {
		r.partial = true
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, err
	}
	if err := h.Check(payload); err != nil {
		return nil, nil, err
	}
	return h, payload, nil
}

// readPayload reads n payload bytes into r.buf. A buffer that is too small
// grows with the bytes that arrive, not to what the header announces, so a
// peer that announces MaxFrame and then trickles or stops costs memory in
// proportion to what it sent.
func (r *Reader) readPayload(n int) ([]byte, error) {
	if cap(r.buf) >= n {
		p := r.buf[:n]
		_, err := io.ReadFull(r.r, p)
		return p, err
	}
	b := r.buf[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n, max(2*cap(b), 64<<10))-len(b))
		}
		k, err := io.ReadFull(r.r, b[len(b):min(n, cap(b))])
		b = b[:len(b)+k]
		if err != nil {
			r.buf = b
			return nil, err
		}
	}
	r.buf = b
	return b, nil
}

// skip discards the payload of h, checking its CRC on the way, without
// buffering more than the bufio.Reader already does.
func (r *Reader) skip(h Header) error {
	var crc uint32
	for n := int(h.PayloadLen()); n > 0; {
		chunk, err := r.r.Peek(min(n, r.r.Size()))
		if len(chunk) == 0 && err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		crc = crc32.Update(crc, castagnoli, chunk)
		n -= len(chunk)
		if _, err := r.r.Discard(len(chunk)); err != nil {
			return err
		}
	}
	if crc != h.CRC() {
		return ErrBadChecksum
	}
	return nil
}

// Ready reports whether Next can return without reading from the stream:
// a whole frame, or a header Next fails at once, is buffered. A server
// answers what it has read before a Next that may block, so that the
// acknowledgements of the frames before an incomplete one do not wait for
// it.
func (r *Reader) Ready() bool {
	n := r.r.Buffered()
	if n < HeaderSize {
		return false
	}
	b, _ := r.r.Peek(HeaderSize) // cannot fail: n bytes are buffered
	if _, err := ParseHeader(b, r.lim); err != nil && CodeOf(err).Fatal() {
		return true
	}
	return n >= Header(b).FrameLen()
}

// Partial reports whether the last Next failed after reading part of a
// frame: a timeout then means a frame that did not complete in time (a
// trickling peer), not a silent one.
func (r *Reader) Partial() bool { return r.partial }

// Buffered returns the number of bytes read from the stream but not yet
// returned as frames.
func (r *Reader) Buffered() int { return r.r.Buffered() }
