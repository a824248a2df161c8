// Command logsend sends lines of text as log messages to logdist, like
// logger(1) for the logdist protocol: each line of stdin, or of the files
// named as arguments, becomes one message. It exits 0 only when every line
// was acknowledged.
//
//	logsend --target logdist-1:7400,logdist-2:7400 --app backup < report.txt
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/internal/cli"
	"github.com/logdist/logdist/internal/tracing"
	"github.com/logdist/logdist/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // lines not acknowledged, or unreadable input
	exitUsage  = 2 // bad flags
)

type options struct {
	targets    []string
	agentID    string
	token      string
	severity   string
	facility   string
	app        string
	hostname   string
	batch      int
	timeout    time.Duration
	noCompress bool
	fastDecode bool
	dicts      []string
	verbose    bool
	logFormat  string
	otlp       string
	sample     float64
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	var o options
	fs := pflag.NewFlagSet("logsend", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.StringSliceVar(&o.targets, "target", []string{"127.0.0.1:7400"}, "logdist address host:port; repeat or comma-separate several for failover")
	fs.StringVar(&o.agentID, "agent-id", host, "agent id sent in HELLO and in every packet")
	fs.StringVar(&o.token, "token", "", "auth token (default $LOGSEND_TOKEN)")
	fs.StringVar(&o.severity, "severity", "info", "severity of every message: emerg, alert, crit, err, warning, notice, info, debug or 0-7")
	fs.StringVar(&o.facility, "facility", "user", "syslog facility: kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, local0-local7 or 0-23")
	fs.StringVar(&o.app, "app", "logsend", "app name of every message")
	fs.StringVar(&o.hostname, "hostname", host, "hostname of every message")
	fs.IntVar(&o.batch, "batch", 100, "at most this many messages per packet")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "overall deadline for every line to be acknowledged")
	fs.BoolVar(&o.noCompress, "no-compress", false, "send packets uncompressed")
	fs.BoolVar(&o.fastDecode, "fast-decode", false, "compress without entropy-coding the literals: packets about a quarter larger that analyzers decode about 3× faster")
	fs.StringArrayVar(&o.dicts, "dict", nil, "zstd dictionary file (logdist dict train) to compress with when the server lists its id; repeat for several, preferred first (the new one first while rotating)")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "log connection events to stderr")
	fs.StringVar(&o.logFormat, "log-format", "text", "format of what logsend writes to stderr (the --verbose log, the failures): text or json")
	fs.StringVar(&o.otlp, "otlp-endpoint", "", "OpenTelemetry collector (OTLP/HTTP, as http://HOST:4318) to send a span to for each packet --trace-sample picks; the packet carries its trace context to logdist and the analyzer; empty: off")
	fs.Float64Var(&o.sample, "trace-sample", 1, "share of packets traced (0-1) when --otlp-endpoint is set")
	tlsFlags := cli.AddTLSClient(fs, "logdist")
	help := fs.BoolP("help", "h", false, "show this help")
	showVersion := cli.VersionFlag(fs, "logsend")

	// say writes a line for the user: text, or a JSON record once
	// --log-format json is known.
	var logger *slog.Logger
	jsonLog := false
	say := func(format string, a ...any) {
		cli.Fail(stderr, logger, jsonLog, fmt.Sprintf("logsend: "+format, a...))
	}
	usageErr := func(format string, a ...any) int {
		say(format+" (see --help)", a...)
		return exitUsage
	}
	err = fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) || (err == nil && *help) {
		fmt.Fprintf(stdout, "Usage: logsend [flags] [file ...]\n\n"+
			"Sends each line of the files (stdin if none, or \"-\") as one message to\n"+
			"logdist and waits until all are acknowledged. Exit status: 0 when every\n"+
			"line was acknowledged, 1 when not (the reason on stderr), 2 for bad flags.\n\n"+
			"Flags:\n%s", fs.FlagUsages())
		return exitOK
	}
	if err != nil {
		return usageErr("%v", err)
	}
	if showVersion(stdout) {
		return exitOK
	}
	if logger, err = cli.NewLogger(stderr, o.logFormat, "info"); err != nil {
		return usageErr("%v", err)
	}
	jsonLog = cli.IsJSON(o.logFormat)
	if o.token == "" {
		o.token = os.Getenv("LOGSEND_TOKEN")
	}
	sev, ok := frame.ParseSeverity(o.severity)
	if !ok {
		return usageErr("unknown --severity %q", o.severity)
	}
	fac, ok := parseFacility(o.facility)
	if !ok {
		return usageErr("unknown --facility %q", o.facility)
	}
	if o.batch < 1 {
		return usageErr("--batch %d must be at least 1", o.batch)
	}
	if o.timeout <= 0 {
		return usageErr("--timeout %v must be positive", o.timeout)
	}

	cfg := client.DefaultConfig()
	cfg.Addrs = nil
	for _, t := range o.targets {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Addrs = append(cfg.Addrs, t)
		}
	}
	cfg.AgentID = o.agentID
	cfg.Token = o.token
	if cfg.TLS, err = tlsFlags.Config(nil); err != nil {
		return usageErr("%v", err)
	}
	cfg.BatchMessages = o.batch
	cfg.Compress = !o.noCompress
	if o.fastDecode && o.noCompress {
		return usageErr("--fast-decode is a way to compress: drop it or --no-compress")
	}
	cfg.FastDecode = o.fastDecode
	if cfg.Dicts, err = frame.LoadDicts(o.dicts); err != nil {
		return usageErr("--dict: %v", err)
	}
	cfg.Block = true
	cfg.CloseTimeout = 0 // Flush below already waited as long as allowed
	cfg.DialTimeout = min(cfg.DialTimeout, o.timeout)
	cfg.BackoffMax = min(cfg.BackoffMax, max(o.timeout/4, cfg.BackoffMin))
	if o.verbose {
		cfg.Logger = logger
	}
	if len(o.app) > int(cfg.Limits.MaxField) || len(o.hostname) > int(cfg.Limits.MaxField) {
		return usageErr("--app and --hostname must be at most %d bytes", cfg.Limits.MaxField)
	}
	tracer, err := tracing.New(tracing.Config{Endpoint: o.otlp, SampleRatio: o.sample, Service: "logsend", Instance: o.agentID, Version: version.Get().Version})
	if err != nil {
		return usageErr("%v", err)
	}
	spans := tracing.NewPackets(tracer, "logsend.packet")
	if spans != nil {
		cfg.Trace = spans.Trace
		cfg.OnResult = func(r client.Result) { spans.End(r.PacketID, r.Err) }
	}
	defer func() {
		spans.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracer.Shutdown(ctx); err != nil {
			say("could not export the spans: %v", oneLine(err.Error()))
		}
	}()
	c, err := client.New(cfg)
	if err != nil {
		return usageErr("%v", err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	m := frame.Message{Severity: sev, Facility: fac, Hostname: []byte(o.hostname), App: []byte(o.app)}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	total := 0
	var sendErr error
	for _, name := range files {
		n, err := sendFile(ctx, c, name, stdin, &m, int(cfg.Limits.MaxBody))
		total += n
		if err != nil {
			sendErr = err
			break
		}
	}
	err = sendErr
	if err == nil || isDeadline(err) {
		if ferr := c.Flush(ctx); err == nil {
			err = ferr
		}
	}
	st := c.Stats()
	unacked := total - int(st.MessagesAcked)
	if err == nil && unacked == 0 {
		return exitOK
	}
	var ie inputError
	if errors.As(err, &ie) {
		say("%v", err)
		return exitFailed
	}
	reason := "no acknowledgement"
	switch {
	case err == nil:
	case isDeadline(err) && st.LastError != nil:
		reason = st.LastError.Error()
	case isDeadline(err):
		reason = "the server did not acknowledge in time"
	default:
		reason = err.Error()
	}
	say("%d of %d lines not acknowledged within %v: %s", unacked, total, o.timeout, oneLine(reason))
	return exitFailed
}

// inputError is a problem with the input itself (unreadable file, a line
// that cannot be a message), reported as is.
type inputError struct{ error }

// sendFile sends each line of the file name ("-": stdin) and returns how
// many lines Send accepted.
func sendFile(ctx context.Context, c *client.Client, name string, stdin io.Reader, m *frame.Message, maxLine int) (int, error) {
	r, display := stdin, "stdin"
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return 0, inputError{fmt.Errorf("cannot read input: %w", err)}
		}
		defer f.Close()
		r, display = f, name
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine+2) // the line, \r\n
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		line = line[:len(line)-len(trailingCR(line))]
		m.Body = line
		m.Timestamp = time.Now().UnixNano()
		if err := c.Send(ctx, *m); err != nil {
			if isDeadline(err) || errors.Is(err, client.ErrAuth) || errors.Is(err, client.ErrHandshake) {
				return n, err
			}
			return n, inputError{fmt.Errorf("cannot send line %d of %s: %w", n+1, display, err)}
		}
		n++
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return n, inputError{fmt.Errorf("line %d of %s is longer than %d bytes, the largest message body", n+1, display, maxLine)}
		}
		return n, inputError{fmt.Errorf("cannot read %s: %w", display, err)}
	}
	return n, nil
}

func trailingCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[len(b)-1:]
	}
	return nil
}

func isDeadline(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

var facilities = map[string]uint8{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
	"solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
	"local5": 21, "local6": 22, "local7": 23,
}

// parseFacility accepts a syslog facility name or its number 0-23.
func parseFacility(s string) (uint8, bool) {
	if f, ok := facilities[strings.ToLower(s)]; ok {
		return f, true
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n > frame.MaxFacility {
		return 0, false
	}
	return uint8(n), true
}
