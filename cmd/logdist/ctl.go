package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/internal/config"
	"github.com/logdist/logdist/internal/control"
	"github.com/logdist/logdist/proxy"
	"github.com/logdist/logdist/proxy/status"
)

const ctlUsage = `Usage: logdist ctl [flags] COMMAND [ARGS]

Speaks to a running logdist's admin API. Changes need a token: --token-file,
or $LOGDIST_ADMIN_TOKEN.

Commands:
  status                      readiness, agents, queue, configuration version
  analyzers                   the analyzers: state, health, weights, shares, errors
  add NAME ADDR               add an analyzer (--weight, --state)
  weight NAME W               set its weight, at once or over --ramp (e.g. 10m)
  drain NAME                  no new packets; those in flight are still answered
  enable NAME                 back to health-driven selection (undoes drain, force-up, force-down)
  force-up NAME               selected whatever its health
  force-down NAME             never selected, never probed
  remove NAME                 take it out (it drains first)
  queue                       the waiting queue
  flush                       send what waits now (skip BUSY retry-afters and redial backoffs)
  config                      the running configuration (YAML) and its version
  versions                    the configuration history
  show N                      version N, whole
  rollback N                  make version N's configuration run again (as a new version)
  reload                      read the config file again (as SIGHUP)
  dead-letters [list]         the dead letters, packets logdist gave up on (--after SEQ, --limit N)
  dead-letters replay SEQ...  send them to the analyzers again (--all: every one)
  dead-letters delete SEQ...  remove them for good (--all: every one)
  health                      GET /healthz: exit 0 if logdist is alive and not draining, 1 if not
                              (the container image's HEALTHCHECK: it has no curl)

Exit status: 0 done, 1 refused or failed (the reason on stderr), 2 bad usage.

Flags:
`

type ctlClient struct {
	base  string
	token string
	http  *http.Client
	out   io.Writer
	json  bool
}

func runCtl(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("logdist ctl", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	adminURL := fs.String("admin", envOr("LOGDIST_ADMIN", "http://127.0.0.1:7480"), "the admin API's base URL (default $LOGDIST_ADMIN)")
	tokenFile := fs.String("token-file", "", "read the bearer token from this file (its first token; default $LOGDIST_ADMIN_TOKEN)")
	weight := fs.Float64("weight", 1, "add: the analyzer's weight")
	state := fs.String("state", "", "add: its state (enabled, drained, forced-up, forced-down)")
	ramp := fs.Duration("ramp", 0, "weight: reach the weight over this long, in steps (0: at once)")
	after := fs.Uint64("after", 0, "dead-letters list: only those after this seq (the next page)")
	limit := fs.Int("limit", 100, "dead-letters list: at most this many (the API's bound is 1000)")
	all := fs.Bool("all", false, "dead-letters replay, delete: every dead letter")
	asJSON := fs.Bool("json", false, "print the API's JSON answer as is")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each request")
	help := fs.BoolP("help", "h", false, "show this help")
	if code, ok := parseSubcommand(fs, args, help, 1, "ctl", ctlUsage, stdout, stderr); !ok {
		return code
	}
	c := &ctlClient{base: strings.TrimRight(*adminURL, "/"), out: stdout, json: *asJSON, http: &http.Client{Timeout: *timeout}}
	if !strings.Contains(c.base, "://") {
		c.base = "http://" + c.base
	}
	c.token = os.Getenv("LOGDIST_ADMIN_TOKEN")
	if *tokenFile != "" {
		toks, err := config.ReadTokens(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "logdist ctl: %v\n", err)
			return 2
		}
		c.token = toks[0].Secret
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	need := map[string]int{"status": 0, "analyzers": 0, "add": 2, "weight": 2, "drain": 1, "enable": 1, "force-up": 1,
		"force-down": 1, "remove": 1, "queue": 0, "flush": 0, "config": 0, "versions": 0, "show": 1, "rollback": 1, "reload": 0, "health": 0}
	n, ok := need[cmd]
	if !ok && cmd != "dead-letters" {
		fmt.Fprintf(stderr, "logdist ctl: unknown command %q (see logdist ctl --help)\n", cmd)
		return 2
	}
	if ok && len(rest) != n {
		fmt.Fprintf(stderr, "logdist ctl %s: want %d argument(s), got %d (see logdist ctl --help)\n", cmd, n, len(rest))
		return 2
	}
	var err error
	if cmd == "dead-letters" {
		err = c.deadLetters(rest, deadLetterFlags{after: *after, limit: *limit, all: *all, set: fs.Changed})
	} else {
		err = c.do(cmd, rest, *weight, *state, *ramp)
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "logdist ctl %s: %v\n", cmd, err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "logdist ctl %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

type usageError struct{ error }

func (c *ctlClient) do(cmd string, args []string, weight float64, state string, ramp time.Duration) error {
	setState := func(s string) error {
		return c.change("PATCH", "/api/v1/analyzers/"+url.PathEscape(args[0]), map[string]any{"state": s})
	}
	switch cmd {
	case "status":
		return c.status()
	case "analyzers":
		return c.analyzers()
	case "add":
		if weight < 0 || math.IsNaN(weight) || math.IsInf(weight, 0) {
			return usageError{fmt.Errorf("--weight %v is not a non-negative number", weight)}
		}
		body := map[string]any{"name": args[0], "addr": args[1], "weight": weight}
		if state != "" {
			body["state"] = state
		}
		return c.change("POST", "/api/v1/analyzers", body)
	case "weight":
		w, err := strconv.ParseFloat(args[1], 64)
		if err != nil || w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return usageError{fmt.Errorf("weight %q is not a non-negative number", args[1])}
		}
		body := map[string]any{"weight": w}
		if ramp > 0 {
			body["ramp"] = ramp.String()
		}
		return c.change("PATCH", "/api/v1/analyzers/"+url.PathEscape(args[0]), body)
	case "drain":
		return setState("drained")
	case "enable":
		return setState("enabled")
	case "force-up":
		return setState("forced-up")
	case "force-down":
		return setState("forced-down")
	case "remove":
		return c.change("DELETE", "/api/v1/analyzers/"+url.PathEscape(args[0]), nil)
	case "queue":
		var q status.Queue
		return c.get("/api/v1/queue", &q, func() {
			fmt.Fprintf(c.out, "%d packets (%d bytes) waiting, the oldest for %.1f s\n", q.Packets, q.Bytes, q.OldestAgeSeconds)
		})
	case "flush":
		var r map[string]int
		if err := c.call("POST", "/api/v1/queue/flush", nil, &r); err != nil {
			return err
		}
		if !c.json {
			fmt.Fprintf(c.out, "flushed: %d packets were waiting\n", r["waiting"])
		}
		return nil
	case "config":
		var v control.Version
		return c.get("/api/v1/config", &v, func() {
			fmt.Fprintf(c.out, "# version %d (%s), made %s by %s\n%s", v.Version, v.Action, v.Time.Local().Format(time.RFC3339), v.Actor, v.Spec.YAML())
		})
	case "versions":
		var rows []struct {
			control.Version
			Running bool `json:"running"`
		}
		return c.get("/api/v1/config/versions", &rows, func() {
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tTIME\tBY\tACTION\tCHANGES")
			for _, r := range rows {
				mark := ""
				if r.Running {
					mark = " (running)"
				}
				fmt.Fprintf(tw, "%d%s\t%s\t%s\t%s\t%s\n", r.Version.Version, mark, r.Time.Local().Format("2006-01-02 15:04:05"), r.Actor, r.Action, strings.Join(r.Changes, "; "))
			}
			tw.Flush()
		})
	case "show":
		var v json.RawMessage
		return c.get("/api/v1/config/versions/"+args[0], &v, func() { c.out.Write(append(v, '\n')) })
	case "rollback":
		n, err := strconv.ParseUint(args[0], 10, 64)
		if err != nil || n == 0 {
			return usageError{fmt.Errorf("version %q is not a version number", args[0])}
		}
		return c.change("POST", "/api/v1/config/rollback", map[string]any{"version": n})
	case "reload":
		return c.change("POST", "/api/v1/config/reload", nil)
	case "health":
		return c.health()
	}
	return usageError{fmt.Errorf("unknown command %q", cmd)}
}

func (c *ctlClient) status() error {
	var st status.Status
	return c.get("/api/v1/status", &st, func() {
		state := "ready"
		if st.Draining {
			state = "draining"
		} else if !st.Ready {
			state = "NOT READY: no analyzer can take packets"
		}
		up := 0
		for _, a := range st.Analyzers {
			if a.Selectable {
				up++
			}
		}
		fmt.Fprintf(c.out, "%s; configuration version %d; build %s; up since %s\n", state, st.ConfigVersion, st.Build, st.Started.Local().Format(time.RFC3339))
		fmt.Fprintf(c.out, "%d agent connections; %d of %d analyzers selectable; %d packets waiting (oldest %.1f s)\n",
			st.AgentConnections, up, len(st.Analyzers), st.Queue.Packets, st.Queue.OldestAgeSeconds)
	})
}

func (c *ctlClient) analyzers() error {
	var rows []status.Analyzer
	return c.get("/api/v1/analyzers", &rows, func() {
		tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADDR\tSTATE\tHEALTH\tWEIGHT\tIN FORCE\tSHARE\tIN FLIGHT\tCONNS\tLAST ERROR")
		for _, a := range rows {
			w := strconv.FormatFloat(a.Weight, 'g', -1, 64)
			if a.Ramp != nil {
				w = fmt.Sprintf("%g→%s (ramp ends %s)", a.Ramp.From, w, a.Ramp.Ends.Local().Format("15:04:05"))
			}
			errText := a.LastError
			if a.LastErrorAt != nil {
				errText += " (" + time.Since(*a.LastErrorAt).Round(time.Second).String() + " ago)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3g\t%.1f%%\t%d\t%d\t%s\n", a.Name, a.Addr, a.State, a.Health, w,
				a.EffectiveWeight, 100*a.Share, a.InFlight, a.Connections, errText)
		}
		tw.Flush()
	})
}

// deadLetterFlags are the flags of "ctl dead-letters"; set tells which
// were given.
type deadLetterFlags struct {
	after uint64
	limit int
	all   bool
	set   func(name string) bool
}

// deadLetters is "ctl dead-letters [list | replay | delete] ...".
func (c *ctlClient) deadLetters(args []string, f deadLetterFlags) error {
	sub := "list"
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "list":
		if len(args) > 0 {
			return usageError{fmt.Errorf("list takes no arguments (page with --after SEQ), got %q", args)}
		}
		if f.set("all") {
			return usageError{errors.New("--all is for replay and delete")}
		}
		if f.limit <= 0 {
			return usageError{fmt.Errorf("--limit %d is not a positive number", f.limit)}
		}
		return c.listDeadLetters(f.after, f.limit)
	case "replay", "delete":
		if f.set("after") || f.set("limit") {
			return usageError{fmt.Errorf("--after and --limit are for list, not %s", sub)}
		}
		var body any
		switch {
		case len(args) > 0 && f.all:
			return usageError{fmt.Errorf("%s: give SEQ... or --all, not both", sub)}
		case len(args) == 0 && !f.all:
			return usageError{fmt.Errorf("%s: name the dead letters (SEQ..., from dead-letters list) or give --all for every one", sub)}
		case len(args) > 0:
			seqs := make([]uint64, len(args))
			for i, a := range args {
				n, err := strconv.ParseUint(a, 10, 64)
				if err != nil || n == 0 {
					return usageError{fmt.Errorf("%s: %q is not a dead letter's seq", sub, a)}
				}
				seqs[i] = n
			}
			body = map[string]any{"seqs": seqs}
		}
		method, path, done := "POST", "/api/v1/dead-letters/replay", "replayed"
		if sub == "delete" {
			method, path, done = "DELETE", "/api/v1/dead-letters", "deleted"
		}
		var r map[string]int
		if err := c.call(method, path, body, &r); err != nil {
			return err
		}
		if c.json {
			return nil
		}
		n := r[done]
		switch {
		case len(args) > 0 && n < len(args):
			fmt.Fprintf(c.out, "%s %d of the %d dead letters named (the others are not dead letters, or no longer)\n", done, n, len(args))
		default:
			fmt.Fprintf(c.out, "%s %d dead letters\n", done, n)
		}
		if sub == "replay" && n > 0 {
			fmt.Fprintln(c.out, "they go to the analyzers again through the spool")
		}
		return nil
	}
	return usageError{fmt.Errorf("unknown subcommand %q: want list, replay or delete", sub)}
}

// listDeadLetters prints a page of dead letters as a table, and how to
// get the next.
func (c *ctlClient) listDeadLetters(after uint64, limit int) error {
	var page struct {
		DeadLetters []proxy.DeadLetter `json:"dead_letters"`
		More        bool               `json:"more"`
	}
	path := fmt.Sprintf("/api/v1/dead-letters?after=%d&limit=%d", after, limit)
	return c.get(path, &page, func() {
		if len(page.DeadLetters) == 0 {
			if after > 0 {
				fmt.Fprintf(c.out, "no dead letters after %d\n", after)
			} else {
				fmt.Fprintln(c.out, "no dead letters")
			}
			return
		}
		tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tREASON\tANALYZER\tCODE\tMESSAGES\tBYTES\tERROR")
		for _, d := range page.DeadLetters {
			at := "-"
			if !d.Time.IsZero() {
				at = d.Time.Local().Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", d.Seq, at, d.Reason, orDash(d.Analyzer), orDash(d.Code),
				d.Messages, d.Bytes, strings.Join(strings.Fields(d.Error), " "))
		}
		tw.Flush()
		if page.More {
			last := page.DeadLetters[len(page.DeadLetters)-1].Seq
			fmt.Fprintf(c.out, "more follow: logdist ctl dead-letters list --after %d\n", last)
		}
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// health asks /healthz, the liveness check, which is open without a
// token: 200 is healthy; anything else, or no answer, is an error saying
// why in one line (the container runtime keeps it in its health log).
func (c *ctlClient) health() error {
	resp, err := c.http.Get(c.base + "/healthz")
	if err != nil {
		return fmt.Errorf("cannot reach logdist's admin API: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	why := strings.Join(strings.Fields(string(b)), " ")
	if resp.StatusCode != http.StatusOK {
		if why == "" {
			return errors.New(resp.Status)
		}
		return fmt.Errorf("%s: %s", resp.Status, why)
	}
	fmt.Fprintf(c.out, "healthy: %s\n", resp.Status)
	return nil
}

// change sends a write and prints its answer: the new version and the
// changes, or that nothing changed.
func (c *ctlClient) change(method, path string, body any) error {
	var a struct {
		Version    uint64   `json:"version"`
		Changed    bool     `json:"changed"`
		Changes    []string `json:"changes"`
		Persistent bool     `json:"persistent"`
	}
	if err := c.call(method, path, body, &a); err != nil {
		return err
	}
	if c.json {
		return nil
	}
	if !a.Changed {
		fmt.Fprintf(c.out, "nothing to change: version %d runs\n", a.Version)
		return nil
	}
	fmt.Fprintf(c.out, "version %d applied:\n", a.Version)
	for _, ch := range a.Changes {
		fmt.Fprintf(c.out, "  %s\n", ch)
	}
	if !a.Persistent {
		fmt.Fprintln(c.out, "note: logdist runs without --data-dir: a restart starts from its config file and flags again, without this change")
	}
	return nil
}

// get fetches path into v and, unless --json, calls show.
func (c *ctlClient) get(path string, v any, show func()) error {
	if err := c.call("GET", path, nil, v); err != nil {
		return err
	}
	if !c.json {
		show()
	}
	return nil
}

// call sends one request; with --json it copies the answer to the output.
// A 4xx or 5xx answer is an error carrying the API's one-line reason.
func (c *ctlClient) call(method, path string, body, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach logdist's admin API: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	if c.json {
		c.out.Write(b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("unexpected answer from %s: %v", path, err)
		}
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// parseSubcommand parses a subcommand's flags. It reports ok when the
// subcommand should run; otherwise it has printed what to (the usage for
// --help or too few arguments, the error for a bad flag) and code is the
// exit status: 0 for --help, 2 for bad usage.
func parseSubcommand(fs *pflag.FlagSet, args []string, help *bool, minArgs int, name, usage string, stdout, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "logdist %s: %v (see logdist %s --help)\n", name, err, name)
		return 2, false
	}
	if *help || fs.NArg() < minArgs {
		fmt.Fprint(stdout, usage+fs.FlagUsages())
		if *help {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}
