package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/pflag"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/internal/spool"
	"github.com/logdist/logdist/internal/zdict"
)

const dictUsage = `Usage: logdist dict train --in FILE | --spool DIR [...] --out DICT [--id N] [--size 64KiB]

Trains a zstd dictionary for logdist's packets (docs/OPERATIONS.md, "zstd
dictionaries"). Small packets compress far better with one: a 1-message packet
hardly compresses alone, as zstd has nothing in it to refer back to.

Samples come from sample logs: --in FILE, a file of lines, one message per line
("-": stdin), each made into a 1-message packet; or --spool DIR, a spool
directory of logdist (DATA-DIR/spool, DATA-DIR/dead-letters), each packet in it
as it was sent (--key-file for sealed records, --dict for packets compressed
with a dictionary). Both may be repeated and mixed. One sample in ten is held
out: the dictionary is trained on the others and measured on it, at --level,
and the expected gain is printed.

The dictionary's id is how the protocol names it: a payload compressed with it
carries the id, and WELCOME lists the ids a server holds. Never give two
different dictionaries the same id; train a new one with a new id, and roll it
out as docs/OPERATIONS.md says (analyzers, then logdist, then agents; the old
one stays loaded until no agent uses it).

Flags:
`

// maxTrainBytes bounds the samples read (memory: about twice this).
const maxTrainBytes = 256 << 20

// dictFlags are the flags of logdist dict train.
type dictFlags struct {
	in, spools, dicts                []string
	keyFile, out, size, builder, lvl string
	agentID, hostname, app           string
	id                               uint64
	maxSamples                       int
}

// runDict is "logdist dict".
func runDict(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("logdist dict", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	var f dictFlags
	fs.StringArrayVar(&f.in, "in", nil, "file of sample log lines, one message per line (- for stdin); repeat for several")
	fs.StringArrayVar(&f.spools, "spool", nil, "spool directory of logdist (DATA-DIR/spool or DATA-DIR/dead-letters) whose packets are samples; repeat for several")
	fs.StringVar(&f.keyFile, "key-file", "", "--spool: the key file its records are sealed with (--spool-key-file)")
	fs.StringArrayVar(&f.dicts, "dict", nil, "--spool: a dictionary some of its packets are compressed with; repeat for several")
	fs.StringVar(&f.out, "out", "", "write the dictionary to this file (required)")
	fs.Uint64Var(&f.id, "id", 0, "dictionary id, 1 to 4294967295 (default: random in [32768, 2^31), the range RFC 8878 leaves for private use)")
	fs.StringVar(&f.size, "size", "64KiB", "size of the dictionary's content: larger holds more of the logs' vocabulary and costs every encoder and decoder that much memory (bytes, or with KiB/MiB)")
	fs.StringVar(&f.builder, "builder", string(zdict.BuilderCover), "how the content is chosen: cover (zstd --train's algorithm) or klauspost (klauspost/compress's dict builder); the entropy tables are klauspost/compress's either way")
	fs.StringVar(&f.lvl, "level", "default", "the zstd level the tables are tuned for and the held-out sample is measured at: fastest, default, better or best (agents' default: default)")
	fs.StringVar(&f.agentID, "agent-id", "", "--in: the agent id of the packets the lines are made into (as your agents send)")
	fs.StringVar(&f.hostname, "hostname", "", "--in: the hostname of their messages")
	fs.StringVar(&f.app, "app", "", "--in: the app name of their messages")
	fs.IntVar(&f.maxSamples, "max-samples", 200000, "read at most this many samples (and at most 256 MiB)")
	help := fs.BoolP("help", "h", false, "show this help")
	if code, ok := parseSubcommand(fs, args, help, 1, "dict", dictUsage, stdout, stderr); !ok {
		return code
	}
	if fs.Arg(0) != "train" || fs.NArg() != 1 {
		fmt.Fprintf(stderr, "logdist dict: unknown command %q (want train; see logdist dict --help)\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if err := dictTrain(&f, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "logdist dict train: %v\n", err)
		return 2
	}
	return 0
}

// sampleSet is what training reads: raw packets, and for the line input
// the messages, to measure packets of 1 and 10 of them.
type sampleSet struct {
	raws  [][]byte
	lines []bool // per raw: made from one line (--in)
	msgs  []frame.Message
	bytes int
	full  bool // a bound stopped the reading
	warn  io.Writer
}

func dictTrain(f *dictFlags, stdout, stderr io.Writer) error {
	if f.out == "" {
		return errors.New("--out FILE is required")
	}
	if len(f.in) == 0 && len(f.spools) == 0 {
		return errors.New("no samples: give --in FILE (lines) or --spool DIR")
	}
	if f.id > math.MaxUint32 {
		return fmt.Errorf("--id %d: above 4294967295", f.id)
	}
	size, err := parseSize(f.size)
	if err != nil {
		return fmt.Errorf("--size: %w", err)
	}
	level, ok := parseLevel(f.lvl)
	if !ok {
		return fmt.Errorf("--level %q: want fastest, default, better or best", f.lvl)
	}
	lim := frame.DefaultLimits()
	if len(f.agentID) > int(lim.MaxField) || len(f.hostname) > int(lim.MaxField) || len(f.app) > int(lim.MaxField) {
		return fmt.Errorf("--agent-id, --hostname and --app must be at most %d bytes", lim.MaxField)
	}
	set := &sampleSet{warn: stderr}
	for _, name := range f.in {
		if err := set.readLines(name, f); err != nil {
			return err
		}
	}
	for _, dir := range f.spools {
		if err := set.readSpool(dir, f); err != nil {
			return err
		}
	}
	if len(set.raws) < zdict.MinSamples {
		return fmt.Errorf("%d samples; want at least %d (a few thousand is better)", len(set.raws), zdict.MinSamples)
	}
	// One in ten held out, when there are enough to spare.
	train, held := set.raws, len(set.raws)
	heldOut := len(set.raws) >= 100
	if heldOut {
		train, held = nil, 0
		for i, r := range set.raws {
			if i%10 == 9 {
				held++
			} else {
				train = append(train, r)
			}
		}
	}
	start := time.Now()
	b, err := zdict.Train(train, zdict.Options{ID: uint32(f.id), Size: size, Builder: zdict.Builder(f.builder), Level: level})
	if err != nil {
		return err
	}
	took := time.Since(start)
	d, err := frame.ParseDict(b)
	if err != nil {
		return fmt.Errorf("the trained dictionary does not load: %w", err)
	}
	if err := writeFileAtomic(f.out, b); err != nil {
		return err
	}
	trainBytes := 0
	for _, r := range train {
		trainBytes += len(r)
	}
	fmt.Fprintf(stdout, "trained dictionary %d: %d bytes of content (%d bytes in all), builder %s, from %d samples (%s) in %s\n",
		d.ID(), d.ContentSize(), len(b), f.builder, len(train), mib(trainBytes), took.Round(time.Millisecond))
	if set.full {
		fmt.Fprintf(stdout, "  (reading stopped at --max-samples %d or 256 MiB)\n", f.maxSamples)
	}
	fmt.Fprintf(stdout, "wrote %s\n", f.out)
	if heldOut {
		fmt.Fprintf(stdout, "held-out sample: %d samples (one in ten, not trained on), zstd level %s:\n", held, f.lvl)
	} else {
		fmt.Fprintf(stdout, "no held-out sample (fewer than 100 samples): measured on the training samples, which overstates the gain, at zstd level %s:\n", f.lvl)
	}
	for _, g := range set.gains(d, level, heldOut) {
		fmt.Fprintf(stdout, "  %-24s ratio %.2f without the dictionary, %.2f with it: %.2fx smaller\n", g.what+":", g.without, g.with, g.with/g.without)
	}
	fmt.Fprintf(stdout, "give it to the analyzers (analyzerd --dict %s), then to logdist (--dict), then to the agents (logsend --dict, client.Config.Dicts)\n", f.out)
	return nil
}

func (s *sampleSet) add(raw []byte, line bool, f *dictFlags) bool {
	if len(s.raws) >= f.maxSamples || s.bytes+len(raw) > maxTrainBytes {
		s.full = true
		return false
	}
	s.raws = append(s.raws, raw)
	s.lines = append(s.lines, line)
	s.bytes += len(raw)
	return true
}

// readLines makes every non-empty line of name a 1-message packet.
func (s *sampleSet) readLines(name string, f *dictFlags) error {
	var r io.Reader = os.Stdin
	if name != "-" {
		fh, err := os.Open(name)
		if err != nil {
			return err
		}
		defer fh.Close()
		r = fh
	}
	lim := frame.DefaultLimits()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), int(lim.MaxBody)+1)
	ts := time.Now().UnixNano()
	id := uint64(ts)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		m := frame.Message{Timestamp: ts, Severity: frame.SevInfo, Facility: 16, Hostname: []byte(f.hostname), App: []byte(f.app),
			Body: append([]byte(nil), line...)}
		ts += int64(time.Millisecond)
		id++
		raw := frame.AppendPacket(nil, &frame.Packet{ID: id, AgentID: []byte(f.agentID), Messages: []frame.Message{m}})
		if !s.add(raw, true, f) {
			return nil
		}
		s.msgs = append(s.msgs, m)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w (lines are at most %d bytes)", name, err, lim.MaxBody)
	}
	return nil
}

// readSpool takes every packet of a spool directory as it was sent.
func (s *sampleSet) readSpool(dir string, f *dictFlags) error {
	cfg := spool.DefaultConfig()
	cfg.ReadOnly = true
	if f.keyFile != "" {
		keys, err := spool.LoadKeyring(f.keyFile)
		if err != nil {
			return err
		}
		cfg.Keys = keys
	}
	d, err := spool.Open(dir, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	dicts, err := frame.LoadDicts(f.dicts)
	if err != nil {
		return fmt.Errorf("--dict: %w", err)
	}
	dec := spoolDecoder()
	dec.Dicts = dicts
	undecodable := 0
	errStop := errors.New("enough samples")
	err = d.Scan(func(r spool.Record) error {
		fb := r.Body
		switch r.Kind {
		case spool.KindData, spool.KindSyslog:
		case spool.KindDeadLetter:
			dl, err := spool.ParseDeadLetter(r.Body)
			if err != nil {
				undecodable++
				return nil
			}
			fb = dl.Frame
		default:
			return nil
		}
		if len(fb) < frame.HeaderSize {
			undecodable++
			return nil
		}
		raw, err := dec.Raw(frame.Header(fb[:frame.HeaderSize]), fb[frame.HeaderSize:])
		if err != nil {
			undecodable++
			return nil
		}
		if !s.add(append([]byte(nil), raw...), false, f) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if undecodable > 0 {
		fmt.Fprintf(s.warn, "logdist dict train: %s: %d packets could not be read (a dictionary or key missing?), skipped\n", dir, undecodable)
	}
	return nil
}

type gain struct {
	what          string
	with, without float64
}

// gains measures the held-out samples: for lines, as packets of 1 and of
// 10 messages; spool packets as they were.
func (s *sampleSet) gains(d *frame.Dict, level zstd.EncoderLevel, heldOut bool) []gain {
	plain := frame.Encoder{Level: level}
	with := frame.Encoder{Level: level, Dict: d}
	var out []gain
	measure := func(what string, raws [][]byte) {
		if len(raws) == 0 {
			return
		}
		var raw, a, b int
		var buf []byte
		for _, r := range raws {
			raw += len(r)
			buf = plain.AppendCompressed(buf[:0], 1, 1, r)
			a += len(buf) - frame.HeaderSize
			buf = with.AppendCompressed(buf[:0], 1, 1, r)
			b += len(buf) - frame.HeaderSize
		}
		out = append(out, gain{what, float64(raw) / float64(b), float64(raw) / float64(a)})
	}
	// The held-out lines' messages, in order.
	var msgs []frame.Message
	var spooled [][]byte
	li := 0
	for i, r := range s.raws {
		if s.lines[i] {
			if !heldOut || i%10 == 9 {
				msgs = append(msgs, s.msgs[li])
			}
			li++
		} else if !heldOut || i%10 == 9 {
			spooled = append(spooled, r)
		}
	}
	for _, n := range []int{1, 10} {
		var raws [][]byte
		for i := 0; i+n <= len(msgs); i += n {
			raws = append(raws, frame.AppendPacket(nil, &frame.Packet{ID: uint64(i + 1), AgentID: []byte("agent"), Messages: msgs[i : i+n]}))
		}
		what := "packets of 1 message"
		if n > 1 {
			what = fmt.Sprintf("packets of %d messages", n)
		}
		measure(what, raws)
	}
	measure("spooled packets", spooled)
	return out
}

// parseSize reads 65536, 64KiB, 64K, 1MiB, 1M.
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}, {"k", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size (like 65536, 64KiB, 1MiB)", s)
	}
	if n > (4<<20)/mult {
		return 0, fmt.Errorf("%q: at most 4 MiB", s)
	}
	return n * mult, nil
}

func parseLevel(s string) (zstd.EncoderLevel, bool) {
	switch s {
	case "fastest":
		return zstd.SpeedFastest, true
	case "default":
		return zstd.SpeedDefault, true
	case "better":
		return zstd.SpeedBetterCompression, true
	case "best":
		return zstd.SpeedBestCompression, true
	}
	return 0, false
}

func mib(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}

// writeFileAtomic writes b to name through a temporary file and a rename.
func writeFileAtomic(name string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
