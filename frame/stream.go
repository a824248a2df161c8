package frame

import (
	"bufio"
	"io"
)

// Reader reads frames from a byte stream (a net.Conn). It checks each header
// with ParseHeader before reading the payload, so a lying length costs no
// memory, and verifies the checksum. Not safe for concurrent use.
type Reader struct {
	r      *bufio.Reader
	lim    *Limits
	header [HeaderSize]byte
	buf    []byte
}

// NewReader returns a Reader over r enforcing lim. It buffers reads in
// 64 KiB chunks, so many small frames cost one read system call.
func NewReader(r io.Reader, lim *Limits) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), lim: lim}
}

// Next reads the next frame. The returned header and payload are valid
// until the next call to Next. Errors are io.EOF at a clean frame boundary,
// io.ErrUnexpectedEOF inside a frame, a read error, or one of this
// package's *Error values (whose code belongs in the ERROR sent back).
func (r *Reader) Next() (Header, []byte, error) {
	if _, err := io.ReadFull(r.r, r.header[:]); err != nil {
		return nil, nil, err
	}
	h, err := ParseHeader(r.header[:], r.lim)
	if err != nil {
		return nil, nil, err
	}
	n := int(h.PayloadLen())
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	payload := r.buf[:n]
	if _, err := io.ReadFull(r.r, payload); err != nil {
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

// Buffered returns the number of bytes read from the stream but not yet
// returned as frames.
func (r *Reader) Buffered() int { return r.r.Buffered() }
