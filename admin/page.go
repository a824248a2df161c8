package admin

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"html/template"
	"net/http"

	"github.com/logdist/logdist/proxy/status"
)

// The status page: one self-contained HTML document, rendered with the
// status at the time of the request and refreshed by its own script from
// GET /api/v1/status every 2 s (paused while the tab is hidden). No
// external asset, no framework: the script and style carry a per-request
// nonce that the Content-Security-Policy requires.
//
//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Parse(pageHTML))

func (h *handler) page(w http.ResponseWriter, _ *http.Request) {
	var nb [16]byte
	_, _ = rand.Read(nb[:])
	nonce := base64.StdEncoding.EncodeToString(nb[:])
	var buf bytes.Buffer
	err := pageTmpl.Execute(&buf, struct {
		Nonce  string
		Status status.Status
	}{nonce, h.s.Status()})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "status page: "+err.Error())
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+"'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	_, _ = w.Write(buf.Bytes())
}
