package e2e

import (
	"bufio"
	"context"
	"fmt"
	"image/color"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The soak: the seed's sustained profile (2,000 packets/s) through logdist
// and four analyzerd (0.4/0.3/0.2/0.1) while analyzers are killed and
// restarted on a schedule (one every tenth of the run, back 5 s later),
// sampling logdist's RSS, open files and goroutines. It asserts zero
// acknowledged loss and that the samples stay flat: after the first tenth
// (warm-up), none grows more than its bound above the warm-up level.
//
// make soak runs 30 minutes (LOGDIST_SOAK=30m) and draws the samples in
// $LOGDIST_SOAK_PNG; make test runs 20 s of it.
func TestSoak(t *testing.T) {
	d := 20 * time.Second
	if v := os.Getenv("LOGDIST_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("LOGDIST_SOAK=%q: %v", v, err)
		}
	}
	every := max(d/180, time.Second) // 180 samples: every 10 s over 30 min
	c := newCluster(t, []float64{0.4, 0.3, 0.2, 0.1}, "--pprof", "--slow-start", "2s")
	pid := c.logdist.cmd.Process.Pid

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var agents []*agent
	for i := range 2 {
		ag := newAgentWith(t, c.listen, fmt.Sprintf("soak-%d", i), func(cfg *clientConfig) { cfg.Window = 256; cfg.MaxPending = 8 << 20; cfg.Block = true })
		agents = append(agents, ag)
		wg.Add(1)
		go ag.sendPaced(ctx, t, &wg, 1000, "soak")
	}

	type sample struct {
		at              float64 // seconds since start
		rssMiB          float64
		fds, goroutines int
		acked           uint64
	}
	var samples []sample
	began := time.Now()
	nextKill, killEvery := began.Add(d/10), d/10
	victim := 0
	var restartAt time.Time
	for end := began.Add(d); time.Now().Before(end); {
		next := time.Now().Add(every)
		waitFor(t, "the next sample", every+time.Second, func() bool { return !time.Now().Before(next) })
		now := time.Now()
		if now.After(nextKill) && now.Before(end.Add(-d/5)) && restartAt.IsZero() { // the last fifth runs undisturbed
			c.analyzers[victim].kill()
			restartAt = now.Add(5 * time.Second)
			nextKill = nextKill.Add(killEvery)
		}
		if !restartAt.IsZero() && now.After(restartAt) {
			c.startAnalyzer(victim)
			victim = (victim + 1) % len(c.analyzers)
			restartAt = time.Time{}
		}
		s := sample{at: now.Sub(began).Seconds(), rssMiB: procRSS(t, pid), fds: procFDs(t, pid), goroutines: goroutines(t, c.admin)}
		for _, a := range agents {
			s.acked += a.Stats().PacketsAcked
		}
		samples = append(samples, s)
	}
	if !restartAt.IsZero() {
		c.startAnalyzer(victim)
	}
	cancel()
	wg.Wait()
	for _, a := range agents {
		a.flush(t)
		c.checkNoLoss(a)
	}

	// Flat: after the warm-up, nothing grows past its bound.
	base := samples[len(samples)/10]
	var maxRSS float64
	var maxFDs, maxG int
	for _, s := range samples[len(samples)/10:] {
		maxRSS, maxFDs, maxG = max(maxRSS, s.rssMiB), max(maxFDs, s.fds), max(maxG, s.goroutines)
	}
	last := samples[len(samples)-1]
	t.Logf("%v at 2,000 packets/s, %d samples: %d packets acknowledged, none lost", d, len(samples), last.acked)
	t.Logf("after warm-up: RSS %.1f MiB (max %.1f, end %.1f), open files %d (max %d, end %d), goroutines %d (max %d, end %d)",
		base.rssMiB, maxRSS, last.rssMiB, base.fds, maxFDs, last.fds, base.goroutines, maxG, last.goroutines)
	const rssBound, fdBound, gBound = 64, 32, 64
	if maxRSS > base.rssMiB+rssBound || maxFDs > base.fds+fdBound || maxG > base.goroutines+gBound {
		t.Errorf("not flat: growth beyond +%d MiB RSS, +%d files, +%d goroutines after the warm-up", rssBound, fdBound, gBound)
	}
	var shareLine []string
	var sum float64
	rows := c.rows()
	for _, r := range rows {
		sum += float64(r.Packets)
	}
	for _, r := range rows {
		shareLine = append(shareLine, fmt.Sprintf("%s %.3f", r.Name, float64(r.Packets)/sum))
	}
	t.Logf("shares over the whole run (kills included): %s", strings.Join(shareLine, ", "))

	if out := os.Getenv("LOGDIST_SOAK_PNG"); out != "" {
		xs := func(f func(sample) float64) plotter.XYs {
			pts := make(plotter.XYs, len(samples))
			for i, s := range samples {
				pts[i].X, pts[i].Y = s.at/60, f(s)
			}
			return pts
		}
		panels := []struct {
			title string
			pts   plotter.XYs
		}{
			{"logdist RSS (MiB)", xs(func(s sample) float64 { return s.rssMiB })},
			{"logdist open files", xs(func(s sample) float64 { return float64(s.fds) })},
			{"logdist goroutines", xs(func(s sample) float64 { return float64(s.goroutines) })},
		}
		plots := make([][]*plot.Plot, len(panels))
		for i, p := range panels {
			pl := plot.New()
			pl.Title.Text = p.title
			pl.X.Label.Text = "minutes (an analyzer killed every " + killEvery.String() + ", back 5 s later)"
			pl.Y.Min = 0
			line, err := plotter.NewLine(p.pts)
			if err != nil {
				t.Fatal(err)
			}
			line.Color = color.RGBA{B: 200, A: 255}
			pl.Add(line, plotter.NewGrid())
			plots[i] = []*plot.Plot{pl}
		}
		img := vgimg.New(8*vg.Inch, 9*vg.Inch)
		dc := draw.New(img)
		canvases := plot.Align(plots, draw.Tiles{Rows: len(panels), Cols: 1, PadY: vg.Millimeter * 4}, dc)
		for i := range plots {
			plots[i][0].Draw(canvases[i][0])
		}
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func procRSS(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func procFDs(t *testing.T, pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// goroutines reads logdist's goroutine count from its pprof endpoint.
func goroutines(t *testing.T, admin string) int {
	body := httpGet(t, "http://"+admin+"/debug/pprof/goroutine?debug=1")
	first, _, _ := strings.Cut(body, "\n")
	n, _ := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	return n
}
