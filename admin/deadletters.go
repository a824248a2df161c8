package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/logdist/logdist/internal/control"
	"github.com/logdist/logdist/proxy"
)

// The dead letters (proxy/deadletters.go): packets logdist gave up on,
// kept under --data-dir until an operator replays or deletes them.
//
//	GET    /api/v1/dead-letters?after=SEQ&limit=N  {"dead_letters": [proxy.DeadLetter...], "more": bool}
//	POST   /api/v1/dead-letters/replay             [{"seqs": [1, 2]}]  → {"replayed": n}
//	DELETE /api/v1/dead-letters                    [{"seqs": [1, 2]}] or ?seq=1&seq=2  → {"deleted": n}
//
// A write without a body (or seq parameters) takes every dead letter; an
// empty "seqs" list is refused rather than taken as every one. Without a
// data directory each answers 409.

const (
	// deadLettersLimit is a list's length when the request gives none;
	// maxDeadLettersLimit bounds the one it gives.
	deadLettersLimit    = 100
	maxDeadLettersLimit = 1000
)

// errNoSpool is what the API says when logdist keeps no dead letters.
const errNoSpool = "no dead letters: logdist runs without --data-dir (start it with --data-dir to keep packets it gives up on)"

// deadLettersAnswer is GET /api/v1/dead-letters.
type deadLettersAnswer struct {
	DeadLetters []proxy.DeadLetter `json:"dead_letters"`
	// More says that dead letters follow the last one listed: ask again
	// with after set to its seq.
	More bool `json:"more"`
}

func (h *handler) deadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, limit := uint64(0), deadLettersLimit
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, `"after" `+strconv.Quote(s)+" is not a sequence number")
			return
		}
		after = n
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, `"limit" `+strconv.Quote(s)+" is not a positive number")
			return
		}
		limit = min(n, maxDeadLettersLimit)
	}
	list, more, err := h.s.DeadLetters(after, limit)
	switch {
	case errors.Is(err, proxy.ErrNoSpool):
		writeError(w, http.StatusConflict, errNoSpool)
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, "reading the dead letters: "+err.Error())
		return
	}
	if list == nil {
		list = []proxy.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, deadLettersAnswer{DeadLetters: list, More: more})
}

// seqsBody is the optional body of the dead-letter writes.
type seqsBody struct {
	Seqs []uint64 `json:"seqs"`
}

// deadLetterSeqs reads the dead letters a write names: nil for every one
// (no body, and for DELETE no seq parameter either).
func deadLetterSeqs(r *http.Request) ([]uint64, error) {
	var seqs []uint64
	params := r.URL.Query()["seq"]
	if len(params) > 0 && r.Method != http.MethodDelete {
		return nil, errors.New(`seq parameters are for DELETE: send {"seqs": [...]}`)
	}
	for _, s := range params {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seq %q is not a sequence number", s)
		}
		seqs = append(seqs, n)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return seqs, nil
	}
	if len(params) > 0 {
		return nil, errors.New("give the dead letters in the body or as seq parameters, not both")
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	var body seqsBody
	if err := decode(r, &body); err != nil {
		return nil, err
	}
	if len(body.Seqs) == 0 {
		return nil, errors.New(`"seqs" is empty: name the dead letters, or send no body for every one`)
	}
	return body.Seqs, nil
}

// which describes seqs for the audit log: "all", or the list (clipped by
// the audit log when long).
func which(seqs []uint64) string {
	if seqs == nil {
		return "all"
	}
	s := make([]string, len(seqs))
	for i, n := range seqs {
		s[i] = strconv.FormatUint(n, 10)
	}
	return strings.Join(s, ",")
}

func (h *handler) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	h.deadLetterWrite(w, r, "replay dead letters", "replayed", h.s.ReplayDeadLetters)
}

func (h *handler) deleteDeadLetters(w http.ResponseWriter, r *http.Request) {
	h.deadLetterWrite(w, r, "delete dead letters", "deleted", h.s.DeleteDeadLetters)
}

// deadLetterWrite runs a replay or a delete of the dead letters the
// request names and audits it: done (with how many), refused (a bad
// request, no data directory) or failed (the disk; some may be done).
func (h *handler) deadLetterWrite(w http.ResponseWriter, r *http.Request, action, done string, fn func([]uint64) (int, error)) {
	seqs, err := deadLetterSeqs(r)
	if err != nil {
		h.refuse(w, r, action, err)
		return
	}
	action += " " + which(seqs)
	n, err := fn(seqs)
	switch {
	case errors.Is(err, proxy.ErrNoSpool):
		h.ctl.Refused(actor(r), action, http.StatusConflict, errNoSpool, true)
		writeError(w, http.StatusConflict, errNoSpool)
		return
	case err != nil:
		why := fmt.Sprintf("%s after %d: %v", done, n, err)
		a := actor(r)
		h.ctl.Record(control.Entry{Time: time.Now().UTC(), Remote: a.Remote, Identity: a.Identity, Action: action,
			Result: "error", Status: http.StatusInternalServerError, Error: why, Version: h.ctl.Current().Version})
		writeError(w, http.StatusInternalServerError, why)
		return
	}
	h.ctl.Audit(actor(r), fmt.Sprintf("%s (%d %s)", action, n, done))
	writeJSON(w, http.StatusOK, map[string]int{done: n})
}
