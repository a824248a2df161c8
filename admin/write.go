package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/logdist/logdist/internal/config"
	"github.com/logdist/logdist/internal/control"
)

type identityKey struct{}

func withIdentity(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

func actor(r *http.Request) control.Actor {
	id, _ := r.Context().Value(identityKey{}).(string)
	return control.Actor{Remote: r.RemoteAddr, Identity: id}
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// decode reads r's JSON body into v strictly: unknown fields, trailing
// data and bodies over maxBody are refused.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("reading the body: %v", err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("body larger than %d KiB", maxBody>>10)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("body: data after the JSON object")
	}
	return nil
}

// changeAnswer is what every write answers.
type changeAnswer struct {
	// Version is the running configuration's version after the request;
	// Changed tells whether the request made it.
	Version uint64   `json:"version"`
	Changed bool     `json:"changed"`
	Changes []string `json:"changes,omitempty"`
	// Persistent is false when logdist keeps no versions on disk (no
	// --data-dir): a restart then starts from the config file and flags,
	// undoing the change.
	Persistent bool `json:"persistent"`
	// Analyzer is the analyzer as it is now, for changes to one.
	Analyzer *config.Analyzer `json:"analyzer,omitempty"`
}

// answer writes a change's result, or its error with the status its kind
// calls for.
func (h *handler) answer(w http.ResponseWriter, res control.Result, err error, name string, created bool) {
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, control.ErrInvalid):
			status = http.StatusBadRequest
		case errors.Is(err, control.ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, control.ErrConflict):
			status = http.StatusConflict
		}
		writeError(w, status, err.Error())
		return
	}
	a := changeAnswer{Version: res.Version.Version, Changed: res.Changed, Persistent: h.ctl.Persistent()}
	if res.Changed {
		a.Changes = res.Version.Changes
	}
	if name != "" {
		if i := res.Version.Spec.Analyzer(name); i >= 0 {
			a.Analyzer = &res.Version.Spec.Analyzers[i]
		}
	}
	status := http.StatusOK
	if created && res.Changed {
		status = http.StatusCreated
	}
	writeJSON(w, status, a)
}

// analyzerBody is POST /api/v1/analyzers: the analyzer rows' field names.
type analyzerBody struct {
	Name   string   `json:"name"`
	Addr   string   `json:"addr"`
	Weight *float64 `json:"weight"`
	State  string   `json:"state"`
}

func (h *handler) addAnalyzer(w http.ResponseWriter, r *http.Request) {
	var b analyzerBody
	if err := decode(r, &b); err != nil {
		h.refuse(w, r, "add analyzer", err)
		return
	}
	a := config.Analyzer{Name: b.Name, Addr: b.Addr, Weight: 1, State: b.State}
	if b.Weight != nil {
		a.Weight = *b.Weight
	}
	if a.Name == "" || a.Addr == "" {
		h.refuse(w, r, "add analyzer", errors.New(`"name" and "addr" are required`))
		return
	}
	if a.State == "enabled" {
		a.State = ""
	}
	res, err := h.ctl.AddAnalyzer(actor(r), a)
	h.answer(w, res, err, a.Name, true)
}

// patchBody is PATCH /api/v1/analyzers/{name}.
type patchBody struct {
	Weight *float64 `json:"weight"`
	// Ramp is a duration ("10m"): reach Weight over it, in steps.
	Ramp  string  `json:"ramp"`
	State *string `json:"state"`
}

func (h *handler) patchAnalyzer(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var b patchBody
	if err := decode(r, &b); err != nil {
		h.refuse(w, r, "set analyzer "+name, err)
		return
	}
	p := control.Patch{Weight: b.Weight, State: b.State}
	if b.Ramp != "" {
		d, err := time.ParseDuration(b.Ramp)
		if err != nil || d <= 0 {
			h.refuse(w, r, "set analyzer "+name, fmt.Errorf(`"ramp" %q: want a positive duration like "10m"`, b.Ramp))
			return
		}
		p.Ramp = d
	}
	res, err := h.ctl.PatchAnalyzer(actor(r), name, p)
	h.answer(w, res, err, name, false)
}

func (h *handler) removeAnalyzer(w http.ResponseWriter, r *http.Request) {
	res, err := h.ctl.RemoveAnalyzer(actor(r), r.PathValue("name"))
	h.answer(w, res, err, "", false)
}

func (h *handler) flushQueue(w http.ResponseWriter, r *http.Request) {
	n := h.s.FlushQueue()
	h.ctl.Audit(actor(r), fmt.Sprintf("flush queue (%d packets waiting)", n))
	writeJSON(w, http.StatusOK, map[string]int{"waiting": n})
}

func (h *handler) rollback(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Version uint64 `json:"version"`
	}
	if err := decode(r, &b); err != nil || b.Version == 0 {
		if err == nil {
			err = errors.New(`"version" is required`)
		}
		h.refuse(w, r, "rollback", err)
		return
	}
	res, err := h.ctl.Rollback(actor(r), b.Version)
	h.answer(w, res, err, "", false)
}

func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	res, err := h.ctl.Reload(actor(r))
	h.answer(w, res, err, "", false)
}

// refuse answers a malformed request 400 and audits it.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, action string, err error) {
	h.ctl.Refused(actor(r), action, http.StatusBadRequest, err.Error(), true)
	writeError(w, http.StatusBadRequest, err.Error())
}

func (h *handler) config(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.ctl.Current())
}

// versionRow is a version in the list: what, who, when; not the whole
// configuration (GET /api/v1/config/versions/{n} has it).
type versionRow struct {
	Version uint64        `json:"version"`
	Time    time.Time     `json:"time"`
	Actor   control.Actor `json:"actor"`
	Action  string        `json:"action"`
	Changes []string      `json:"changes"`
	Running bool          `json:"running,omitempty"`
}

func (h *handler) versions(w http.ResponseWriter, _ *http.Request) {
	vs := h.ctl.Versions()
	rows := make([]versionRow, len(vs))
	for i, v := range vs {
		rows[i] = versionRow{Version: v.Version, Time: v.Time, Actor: v.Actor, Action: v.Action, Changes: v.Changes, Running: i == len(vs)-1}
	}
	writeJSON(w, http.StatusOK, rows)
}

func (h *handler) version(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseUint(r.PathValue("n"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "version "+strconv.Quote(r.PathValue("n"))+" is not a number")
		return
	}
	v, err := h.ctl.Get(n)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}
