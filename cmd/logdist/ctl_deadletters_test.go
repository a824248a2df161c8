package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDeadLetters answers the dead-letter API with canned JSON and
// records the requests it got ("METHOD URI BODY").
type fakeDeadLetters struct {
	mu   sync.Mutex
	reqs []string
}

func (f *fakeDeadLetters) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(b)))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == "GET" && r.URL.Query().Get("after") == "0":
		io.WriteString(w, `{"dead_letters":[
			{"seq":7,"reason":"rejected","code":"rejected","analyzer":"a1","error":"cannot\nparse","time":"2024-05-01T10:00:00Z","spool_seq":41,"messages":3,"bytes":512},
			{"seq":9,"reason":"retries-exhausted","error":"no answer within --retry-max attempts","time":"2024-05-01T10:00:05Z","messages":1,"bytes":90}],
			"more":true}`)
	case r.Method == "GET":
		io.WriteString(w, `{"dead_letters":[],"more":false}`)
	case r.Method == "POST":
		io.WriteString(w, `{"replayed":1}`)
	case r.Method == "DELETE":
		io.WriteString(w, `{"deleted":2}`)
	}
}

func (f *fakeDeadLetters) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

// logdist ctl dead-letters: list prints a table (seq, time, reason,
// analyzer, code, messages, bytes, error on one line) and how to get the
// next page; replay and delete send the seqs named, or none with --all,
// and say how many were done; bad usage exits 2 without a request.
func TestCtlDeadLetters(t *testing.T) {
	fake := &fakeDeadLetters{}
	hs := httptest.NewServer(fake)
	defer hs.Close()
	url := hs.URL

	code, out, errs := ctl("--admin", url, "dead-letters")
	at := func(s string) string {
		tm, _ := time.Parse(time.RFC3339, s)
		return tm.Local().Format("2006-01-02 15:04:05")
	}
	want := "SEQ  TIME                 REASON             ANALYZER  CODE      MESSAGES  BYTES  ERROR\n" +
		"7    " + at("2024-05-01T10:00:00Z") + "  rejected           a1        rejected  3         512    cannot parse\n" +
		"9    " + at("2024-05-01T10:00:05Z") + "  retries-exhausted  -         -         1         90     no answer within --retry-max attempts\n" +
		"more follow: logdist ctl dead-letters list --after 9\n"
	if code != 0 || out != want || errs != "" {
		t.Fatalf("dead-letters: exit %d, stderr %q, stdout\n%s\nwant\n%s", code, errs, out, want)
	}
	if code, out, _ := ctl("--admin", url, "dead-letters", "list", "--after", "9", "--limit", "5"); code != 0 || out != "no dead letters after 9\n" {
		t.Fatalf("list --after 9: exit %d %q", code, out)
	}
	if code, out, _ := ctl("--admin", url, "--json", "dead-letters", "list", "--after", "9"); code != 0 || !strings.Contains(out, `"dead_letters":[]`) {
		t.Fatalf("list --json: exit %d %q", code, out)
	}
	if code, out, _ := ctl("--admin", url, "dead-letters", "replay", "7", "9"); code != 0 || out != "replayed 1 of the 2 dead letters named (the others are not dead letters, or no longer)\nthey go to the analyzers again through the spool\n" {
		t.Fatalf("replay 7 9: exit %d %q", code, out)
	}
	if code, out, _ := ctl("--admin", url, "dead-letters", "delete", "--all"); code != 0 || out != "deleted 2 dead letters\n" {
		t.Fatalf("delete --all: exit %d %q", code, out)
	}
	if code, _, _ := ctl("--admin", url, "dead-letters", "replay", "--all"); code != 0 {
		t.Fatalf("replay --all: exit %d", code)
	}
	wantReqs := []string{
		"GET /api/v1/dead-letters?after=0&limit=100",
		"GET /api/v1/dead-letters?after=9&limit=5",
		"GET /api/v1/dead-letters?after=9&limit=100",
		`POST /api/v1/dead-letters/replay {"seqs":[7,9]}`,
		"DELETE /api/v1/dead-letters",
		"POST /api/v1/dead-letters/replay",
	}
	if got := fake.take(); strings.Join(got, "\n") != strings.Join(wantReqs, "\n") {
		t.Fatalf("requests:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantReqs, "\n"))
	}

	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"delete"}, "delete: name the dead letters (SEQ..., from dead-letters list) or give --all"},
		{[]string{"replay"}, "replay: name the dead letters"},
		{[]string{"delete", "7", "--all"}, "give SEQ... or --all, not both"},
		{[]string{"delete", "seven"}, `delete: "seven" is not a dead letter's seq`},
		{[]string{"replay", "0"}, `replay: "0" is not a dead letter's seq`},
		{[]string{"list", "7"}, "list takes no arguments"},
		{[]string{"list", "--all"}, "--all is for replay and delete"},
		{[]string{"list", "--limit", "0"}, "--limit 0 is not a positive number"},
		{[]string{"delete", "7", "--after", "3"}, "--after and --limit are for list, not delete"},
		{[]string{"purge"}, `unknown subcommand "purge": want list, replay or delete`},
	} {
		code, out, errs := ctl(append([]string{"--admin", url, "dead-letters"}, tc.args...)...)
		if code != 2 || out != "" || !strings.HasPrefix(errs, "logdist ctl dead-letters: ") || !strings.Contains(errs, tc.says) || strings.Count(errs, "\n") != 1 {
			t.Errorf("dead-letters %v: exit %d, stdout %q, stderr %q; want 2 and one line saying %q", tc.args, code, out, errs, tc.says)
		}
	}
	if reqs := fake.take(); len(reqs) != 0 {
		t.Fatalf("bad usage sent requests: %q", reqs)
	}
	if code, _, errs := ctl("--admin", url, "dead-letters", "--after", "x"); code != 2 || !strings.Contains(errs, "--after") {
		t.Fatalf("--after x: exit %d %q", code, errs)
	}
}

// Against a logdist without --data-dir, ctl dead-letters exits 1 with the
// API's reason, which names --data-dir; replay and delete need a token.
func TestCtlDeadLettersWithoutDataDir(t *testing.T) {
	url, tokenFile, _ := ctlRig(t)
	for _, args := range [][]string{{"dead-letters"}, {"--token-file", tokenFile, "dead-letters", "replay", "--all"}, {"--token-file", tokenFile, "dead-letters", "delete", "3"}} {
		code, out, errs := ctl(append([]string{"--admin", url}, args...)...)
		if code != 1 || out != "" || !strings.Contains(errs, "409 Conflict: no dead letters: logdist runs without --data-dir") || strings.Count(errs, "\n") != 1 {
			t.Errorf("ctl %v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, _, errs := ctl("--admin", url, "dead-letters", "delete", "--all"); code != 1 || !strings.Contains(errs, "401 Unauthorized") {
		t.Fatalf("delete without a token: exit %d %q", code, errs)
	}
}
