package server

import (
	"bufio"
	"io"

	"github.com/logdist/logdist/frame"
)

// frameReader reads frames like frame.Reader, and can also tell whether a
// whole frame is already buffered (ready), which decides when a batch of
// answers is flushed: an incomplete frame may take a while to arrive, and
// the ACKs for the frames before it should not wait for it.
type frameReader struct {
	br     *bufio.Reader
	lim    *frame.Limits
	header [frame.HeaderSize]byte
	buf    []byte
	// partial is set when the last next failed after reading part of a
	// frame: a timeout then means a frame that did not complete in time
	// (a trickling peer), not a silent one.
	partial bool
}

func newFrameReader(r io.Reader, lim *frame.Limits) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, 64<<10), lim: lim}
}

// ready reports whether next can return without reading from the
// connection: a whole frame, or a header that will be rejected, is
// buffered.
func (r *frameReader) ready() bool {
	n := r.br.Buffered()
	if n < frame.HeaderSize {
		return false
	}
	b, _ := r.br.Peek(frame.HeaderSize) // cannot fail: n bytes are buffered
	h, err := frame.ParseHeader(b, r.lim)
	return err != nil || n >= h.FrameLen()
}

// next reads the next frame. The header is checked (frame.ParseHeader)
// before anything is allocated for the payload, and the checksum after.
// The returned header and payload are valid until the next call. Errors:
// io.EOF at a frame boundary, io.ErrUnexpectedEOF inside a frame, a read
// error, or a *frame.Error.
func (r *frameReader) next() (frame.Header, []byte, error) {
	r.partial = false
	if n, err := io.ReadFull(r.br, r.header[:]); err != nil {
		r.partial = n > 0
		return nil, nil, err
	}
	h, err := frame.ParseHeader(r.header[:], r.lim)
	if err != nil {
		return nil, nil, err
	}
	n := int(h.PayloadLen())
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	payload := r.buf[:n]
	if _, err := io.ReadFull(r.br, payload); err != nil {
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
