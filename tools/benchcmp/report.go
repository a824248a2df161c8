package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

type report struct {
	cfg      config
	header   string
	paths    []string
	tput     []measurement
	lat      []measurement
	latRate  float64
	profiles []profileRun
	idle     *idleResult
	// profileTop is go tool pprof -top of logdist under full load.
	profileTop string
	// logdist's missed heartbeats and lost analyzer connections, before
	// and after the throughput and latency rounds.
	missed0, lost0, missed1, lost1 float64
	took                           time.Duration
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *report) values(path string, f func(measurement) float64) []float64 {
	var out []float64
	for _, m := range r.tput {
		if m.path == path {
			if v := f(m); v >= 0 {
				out = append(out, v)
			}
		}
	}
	return out
}

func latValues(ms []measurement, path string, f func(measurement) float64) []float64 {
	var out []float64
	for _, m := range ms {
		if m.path == path {
			out = append(out, f(m))
		}
	}
	return out
}

func join(v []float64, format string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, ", ")
}

func (r *report) write(w io.Writer) {
	c := r.cfg
	pf := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	pf("logdist side by side (tools/benchcmp)\n")
	pf("machine: %s\n", r.header)
	zstd := "zstd"
	if c.fastDecode {
		zstd = "zstd with --fast-decode"
	}
	pf("rounds: %d per path, interleaved; %d connections, window %d, 10 messages of 200 bytes per packet, %s; medians\n\n", c.rounds, c.conns, c.window, zstd)

	pps := func(m measurement) float64 { return m.res.PacketsPerSec }
	pf("### Throughput (as fast as the window allows, %v per round)\n\n", c.duration)
	pf("| path | packets/s | messages/s | MB/s | p99 ms | proxy CPU µs/packet | analyzers CPU µs/packet | rounds (packets/s) |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	med := map[string]float64{}
	for _, p := range r.paths {
		v := r.values(p, pps)
		med[p] = median(v)
		cpu := r.values(p, func(m measurement) float64 { return m.cpuPerPacket() })
		cpus := "-"
		if len(cpu) > 0 {
			cpus = fmt.Sprintf("%.2f", median(cpu)*1e6)
		}
		ans := "-"
		if an := r.values(p, func(m measurement) float64 { return m.analyzerCPUPerPacket() }); len(an) > 0 {
			ans = fmt.Sprintf("%.2f", median(an)*1e6)
		}
		pf("| %s | %.0f | %.0f | %.1f | %.2f | %s | %s | %s |\n", p, med[p],
			median(r.values(p, func(m measurement) float64 { return m.res.MessagesPerSec })),
			median(r.values(p, func(m measurement) float64 { return m.res.MBytesPerSec })),
			median(r.values(p, func(m measurement) float64 { return m.res.LatencyMs.P99 })),
			cpus, ans, join(v, "%.0f"))
	}
	pf("\nlogdist/direct = %.2f", med["logdist"]/med["direct"])
	if h, ok := med["haproxy"]; ok {
		pf("   logdist/haproxy = %.2f", med["logdist"]/h)
	} else {
		pf("   (haproxy skipped)")
	}
	if t, ok := med[pathTLSAgent]; ok {
		pf("\nlogdist-tls/logdist = %.2f   logdist-tls2/logdist = %.2f (TLS on the agent hop; on both hops, target ≥ 0.70)", t/med["logdist"], med[pathTLSBoth]/med["logdist"])
	}
	if t0, ok := med[pathTrace0]; ok {
		pf("\nlogdist-trace0/logdist = %.2f (tracing on, nothing sampled: target ≥ 0.97)   logdist-trace1/logdist = %.2f (1%% of packets traced)", t0/med["logdist"], med[pathTrace1]/med["logdist"])
	}
	if sp, ok := med[pathSpool]; ok {
		pf("\nlogdist-spool/logdist = %.2f (--ack-mode spool, fsync every 100 ms: target ≥ 0.80; the spool writes each packet once, so its write rate is the path's MB/s)", sp/med["logdist"])
	}
	pf("\nproxy CPU = utime+stime of the logdist (or haproxy) process from /proc/<pid>/stat over the round, divided by the packets acknowledged; analyzers CPU = the same for the analyzerd processes the path sends to (on this shared host the analyzers' CPU is what bounds throughput)\n\n")

	pf("### Latency at a fixed rate of half the direct maximum (%.0f packets/s, %v per round)\n\n", r.latRate, c.latDuration)
	pf("| path | achieved packets/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p99 per round |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	p99 := map[string]float64{}
	for _, p := range r.paths {
		f := func(g func(measurement) float64) float64 { return median(latValues(r.lat, p, g)) }
		p99[p] = f(func(m measurement) float64 { return m.res.LatencyMs.P99 })
		pf("| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", p,
			f(func(m measurement) float64 { return m.res.PacketsPerSec }),
			f(func(m measurement) float64 { return m.res.LatencyMs.P50 }),
			f(func(m measurement) float64 { return m.res.LatencyMs.P90 }),
			p99[p],
			f(func(m measurement) float64 { return m.res.LatencyMs.P999 }),
			f(func(m measurement) float64 { return m.res.LatencyMs.Max }),
			join(latValues(r.lat, p, func(m measurement) float64 { return m.res.LatencyMs.P99 }), "%.2f"))
	}
	pf("\np99 logdist/direct = %.2f (latency measured from each packet's scheduled send time)\n\n", p99["logdist"]/p99["direct"])

	pf("### Shares (analyzerd /stats deltas over all throughput and latency rounds)\n\n")
	pf("| analyzer | weight share |")
	for _, p := range r.paths[1:] {
		pf(" %s packets | %s share | %s error |", p, p, p)
	}
	pf("\n|---|---:|")
	for range r.paths[1:] {
		pf("---:|---:|---:|")
	}
	pf("\n")
	sums := map[string][]uint64{}
	tot := map[string]uint64{}
	for _, m := range append(slices.Clone(r.tput), r.lat...) {
		if m.shares == nil {
			continue
		}
		if sums[m.path] == nil {
			sums[m.path] = make([]uint64, len(weights))
		}
		for i, v := range m.shares {
			sums[m.path][i] += v
			tot[m.path] += v
		}
	}
	worst := map[string]float64{}
	for i, wt := range weights {
		pf("| a%d | %.4f |", i+1, wt)
		for _, p := range r.paths[1:] {
			share := float64(sums[p][i]) / float64(max(tot[p], 1))
			worst[p] = math.Max(worst[p], math.Abs(share-wt))
			pf(" %d | %.4f | %+.4f |", sums[p][i], share, share-wt)
		}
		pf("\n")
	}
	pf("\nmax share error:")
	for _, p := range r.paths[1:] {
		pf(" %s %.4f (%.2f%% points);", p, worst[p], worst[p]*100)
	}
	pf(" HAProxy balances connections (%d here), not packets\n", c.conns)
	if r.missed0 >= 0 && r.missed1 >= 0 {
		pf("logdist during these rounds: %.0f missed heartbeats, %.0f analyzer connections lost\n", r.missed1-r.missed0, r.lost1-r.lost0)
	}
	pf("\n")

	if r.profileTop != "" {
		pf("### logdist CPU profile under full load (%v, while logbench sends as fast as the window allows)\n\n```\n%s```\n\n", c.cpuProfile, r.profileTop)
	}
	if len(r.profiles) > 0 {
		pf("### Load profiles through logdist (--scale %g: rates ×%g, durations ÷%g)\n\n", c.scale, c.scale, c.scale)
		pf("| profile | length s | scheduled | acked | mean packets/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | busy | max share error |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range r.profiles {
			res := p.res
			mse := math.NaN()
			if res.MaxShareError != nil {
				mse = *res.MaxShareError
			}
			pf("| %s | %.1f | %d | %d | %.0f | %.2f | %.2f | %.2f | %.2f | %d | %d | %.4f |\n", p.name, res.DurationS, res.PacketsScheduled, res.PacketsAcked,
				res.PacketsPerSec, res.LatencyMs.P50, res.LatencyMs.P99, res.LatencyMs.P999, res.LatencyMs.Max, res.Errors, res.Busy, mse)
		}
		pf("\n")
	}
	if r.idle != nil {
		i := r.idle
		pf("### Idle agent connections (fresh logdist, four analyzers)\n\n")
		if i.rssErr != nil && i.rssHolding == 0 {
			pf("RSS not measured: %v\n\n", i.rssErr)
		} else {
			per := (i.rssHolding - i.rssBefore) * 1024 / float64(max(i.held, 1))
			pf("| idle connections held | RSS before MiB | RSS holding MiB | KiB per connection | opened in s |\n|---:|---:|---:|---:|---:|\n")
			pf("| %d of %d | %.1f | %.1f | %.1f | %.1f |\n\n", i.held, i.conns, i.rssBefore, i.rssHolding, per, i.openSeconds)
		}
	}
	pf("took %v\n", r.took.Round(time.Second))
}
