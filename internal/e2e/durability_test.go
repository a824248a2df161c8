package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// freeUDPPort returns a UDP port nothing listens on now.
func freeUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
}

// syslogSender sends numbered RFC 3164 datagrams at a steady rate and
// remembers when it sent each.
type syslogSender struct {
	prefix string
	mu     sync.Mutex
	sent   []time.Time // by token number
}

func (s *syslogSender) run(ctx context.Context, t *testing.T, wg *sync.WaitGroup, addr string, rate int) {
	defer wg.Done()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Errorf("syslog sender: %v", err)
		return
	}
	defer conn.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range rate / 100 {
			s.mu.Lock()
			n := len(s.sent)
			s.sent = append(s.sent, time.Now())
			s.mu.Unlock()
			// Errors (ECONNREFUSED while logdist is down) lose the
			// datagram: it was never received, and the check knows when
			// logdist was down.
			_, _ = fmt.Fprintf(conn, "<134>Dec  6 15:00:00 kill9host app: %s%d", s.prefix, n)
		}
	}
}

// down is a stretch of time logdist was not receiving: from a little
// before the kill (what it held in memory, not yet in the spool) to when
// its restart was ready.
type down struct{ from, to time.Time }

// syslogMemoryWindow is how long before a kill -9 a datagram may still be
// in memory only: the batch's linger (5 ms) plus the spool append
// (written, not synced: kill -9 loses nothing written) on a loaded
// machine.
const syslogMemoryWindow = 250 * time.Millisecond

// kill -9 of logdist under load with --ack-mode spool, five times, on the
// same data directory: every packet acknowledged to an agent, and every
// syslog datagram logdist received before the kill, reaches an analyzer.
// Agents (the client library, resending what was not acknowledged) and
// 2,000 syslog datagrams/s run throughout; tokens are unique, counted at
// the analyzers, duplicates reported.
func TestSpoolSurvivesKill9(t *testing.T) {
	rounds := 5
	dir := t.TempDir()
	agentPort, udpPort := strconv.Itoa(freeTCPPort(t)), freeUDPPort(t)
	c := newCluster(t, []float64{0.4, 0.3, 0.2, 0.1}, "--listen", "127.0.0.1:"+agentPort, "--syslog-udp", "127.0.0.1:"+udpPort,
		"--data-dir", dir, "--ack-mode", "spool", "--spool-sync", "interval:50ms")
	addr := "127.0.0.1:" + agentPort
	ids := []string{"kill9-a", "kill9-b"}
	agents := []*agent{newAgent(t, addr, ids[0]), newAgent(t, addr, ids[1])}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go a.sendPaced(ctx, t, &wg, 1000, fmt.Sprintf("kill9 agent %d", i))
	}
	sys := &syslogSender{prefix: "kill9-tok-"}
	wg.Add(1)
	go sys.run(ctx, t, &wg, "127.0.0.1:"+udpPort, 2000)

	ld := c.logdist
	var downs []down
	var kills []time.Time
	for round := 1; round <= rounds; round++ {
		admin := ld.fields["admin"]
		base := appendedOf(admin)
		waitFor(t, "logdist spooling under load", 20*time.Second, func() bool { return appendedOf(admin) >= base+1500 })
		spooled := appendedOf(admin) - base
		ld.kill()
		killed := time.Now()
		kills = append(kills, killed)
		ld = start(t, binary(t, "logdist"), c.ldArgs...)
		downs = append(downs, down{killed.Add(-syslogMemoryWindow), time.Now()})
		t.Logf("round %d: killed after %v packets spooled; ready again %v later", round, spooled, time.Since(killed).Round(time.Millisecond))
	}
	// A last stretch under load on the last instance, then stop sending.
	admin := ld.fields["admin"]
	base := appendedOf(admin)
	waitFor(t, "logdist spooling under load", 20*time.Second, func() bool { return appendedOf(admin) >= base+1500 })
	cancel()
	wg.Wait()
	for _, a := range agents {
		a.flush(t)
	}

	// What must have arrived: every packet an agent saw acknowledged, and
	// every datagram sent while logdist was up and not about to be killed.
	sys.mu.Lock()
	sentAt := append([]time.Time(nil), sys.sent...)
	sys.mu.Unlock()
	mustSyslog := map[int]bool{}
	for n, at := range sentAt {
		up := true
		for _, d := range downs {
			if !at.Before(d.from) && at.Before(d.to) {
				up = false
			}
		}
		if up {
			mustSyslog[n] = true
		}
	}
	var got map[string]int
	var lostPkts, lostSys []string
	arrived := func() bool {
		got = map[string]int{}
		c.eachOut(func(l outLine) {
			if i := strings.Index(l.Msg, sys.prefix); i >= 0 {
				got["syslog/"+l.Msg[i+len(sys.prefix):]]++
				return
			}
			got[l.Agent+"/"+strconv.FormatUint(l.PacketID, 10)]++
		})
		lostPkts, lostSys = lostPkts[:0], lostSys[:0]
		for i, a := range agents {
			for _, id := range a.ackedIDs() {
				if k := ids[i] + "/" + strconv.FormatUint(id, 10); got[k] == 0 {
					lostPkts = append(lostPkts, k)
				}
			}
		}
		for n := range mustSyslog {
			if got["syslog/"+strconv.Itoa(n)] == 0 {
				lostSys = append(lostSys, strconv.Itoa(n))
			}
		}
		return len(lostPkts) == 0 && len(lostSys) == 0
	}
	for deadline := time.Now().Add(90 * time.Second); !arrived(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			slices.Sort(lostSys)
			t.Fatalf("after 90 s, %d acknowledged packets (first: %v) and %d received datagrams (first: %v) not at any analyzer; datagrams sent %d, kills at %v",
				len(lostPkts), lostPkts[:min(len(lostPkts), 5)], len(lostSys), lostSys[:min(len(lostSys), 5)], len(sentAt), kills)
		}
	}
	acked, dupPkts, dupSys, sysGot := 0, 0, 0, 0
	for _, a := range agents {
		acked += len(a.ackedIDs())
	}
	for k, n := range got {
		switch {
		case strings.HasPrefix(k, "syslog/"):
			sysGot++
			if n > 1 {
				dupSys++
			}
		case n > 1:
			dupPkts++
		}
	}
	// The datagrams sent in the last syslogMemoryWindow before a kill
	// (not asserted: some were only in memory): how many arrived.
	window, windowArrived := 0, 0
	for n, at := range sentAt {
		for _, k := range kills {
			if !at.Before(k.Add(-syslogMemoryWindow)) && at.Before(k) {
				window++
				if got["syslog/"+strconv.Itoa(n)] > 0 {
					windowArrived++
				}
			}
		}
	}
	t.Logf("datagrams sent within %v before a kill: %d, of which %d arrived", syslogMemoryWindow, window, windowArrived)
	t.Logf("%d kills: %d packets acknowledged, all delivered (%d delivered more than once); %d datagrams sent, %d had to arrive, %d arrived (%d more than once); %d sent while logdist was down or within %v before a kill",
		rounds, acked, dupPkts, len(sentAt), len(mustSyslog), sysGot, dupSys, len(sentAt)-len(mustSyslog), syslogMemoryWindow)
	if acked < rounds*1000 {
		t.Fatalf("only %d packets acknowledged over %d rounds: the load did not run", acked, rounds)
	}
}

// appendedOf reads logdist_spool_appended_total from an admin address
// (0 if it cannot).
func appendedOf(admin string) float64 {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return sumMetric(string(b), "logdist_spool_appended_total")
}

// Torn writes and bit flips: logdist is stopped with packets in its spool
// (every analyzer down, --ack-mode spool); a segment is cut mid-record and
// bytes are flipped in a record in its middle. logdist spool verify names
// both (segment and offset), the restart skips exactly the damaged
// records (counted) and every other packet is delivered.
func TestSpoolDamageEndToEnd(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, []float64{1}, "--data-dir", dir, "--ack-mode", "spool", "--spool-sync", "always")
	c.analyzers[0].kill()
	ag := newAgent(t, c.listen, "damage")
	const n = 200
	ag.send(t, n, "damage test packet")
	ag.flush(t)
	if got := len(ag.ackedIDs()); got != n {
		t.Fatalf("%d of %d acknowledged (by the spool, with the analyzer down); first error: %v", got, n, ag.failure())
	}
	c.logdist.signal(15)
	if code := c.logdist.wait(20 * time.Second); code != 0 {
		t.Fatalf("logdist exit %d\n%s", code, c.logdist.logs())
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "spool", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	seg := segs[0]
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Records start after the 32-byte header, each 18 bytes of header and
	// its body: find the 100th and the last.
	var offs []int
	for off := 32; off+18 <= len(b); {
		offs = append(offs, off)
		off += 8 + int(uint32(b[off])<<24|uint32(b[off+1])<<16|uint32(b[off+2])<<8|uint32(b[off+3]))
	}
	if len(offs) != n {
		t.Fatalf("%d records in the segment, want %d", len(offs), n)
	}
	flip := offs[99] + 40 // inside the 100th record's body
	b[flip] ^= 0xff
	b = b[:offs[n-1]+25] // the last record cut mid-body: a torn write
	if err := os.WriteFile(seg, b, 0o640); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(binary(t, "logdist"), "spool", "verify", filepath.Join(dir, "spool")).CombinedOutput()
	t.Logf("logdist spool verify:\n%s", out)
	for _, want := range []string{filepath.Base(seg), strconv.Itoa(offs[99]), strconv.Itoa(offs[n-1])} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("verify does not name %q:\n%s", want, out)
		}
	}
	c.startAnalyzer(0)
	ld := start(t, binary(t, "logdist"), c.ldArgs...)
	got := map[uint64]int{}
	waitFor(t, "every undamaged packet delivered", 30*time.Second, func() bool {
		got = c.received()
		return len(got) >= n-2
	})
	// The client numbers its packets in order; the spool holds them in
	// the order they came.
	ids := ag.ackedIDs()
	slices.Sort(ids)
	for i, id := range ids {
		if damaged := i == 99 || i == n-1; damaged != (got[id] == 0) {
			t.Errorf("packet %d (record %d) delivered %d times (damaged: records 100 and %d)", id, i+1, got[id], n)
		}
	}
	m := metricsText(t, ld.fields["admin"])
	if v := sumMetric(m, "logdist_spool_damaged_records_total"); v != 2 {
		// The torn tail is cut when the spool opens; the flipped record
		// is met on replay. Each is one record, reported in the log.
		t.Logf("metrics:\n%s", grepLines(m, "logdist_spool"))
		t.Fatalf("logdist_spool_damaged_records_total %v, want 2 (the torn tail and the flipped record)", v)
	}
	if !strings.Contains(ld.logs(), "torn") {
		t.Fatalf("the restart did not report the torn tail:\n%s", ld.logs())
	}
}

// All analyzers down under 2,000 packets/s with --ack-mode spool: agents
// keep being acknowledged (the spool takes everything), the spool's size
// and the age of its oldest packet show in the metrics during the
// outage, and when the analyzers return every acknowledged packet is
// delivered and the spool empties. The outage lasts 5 s in make test;
// LOGDIST_OUTAGE=60s (make durability) runs the minute.
func TestSpoolOutage(t *testing.T) {
	outage := 5 * time.Second
	if v := os.Getenv("LOGDIST_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LOGDIST_OUTAGE=%q: %v", v, err)
		}
		outage = d
	}
	c := newCluster(t, []float64{0.4, 0.3, 0.2, 0.1}, "--data-dir", t.TempDir(), "--ack-mode", "spool")
	ids := []string{"outage-a", "outage-b"}
	agents := []*agent{newAgent(t, c.listen, ids[0]), newAgent(t, c.listen, ids[1])}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go a.sendPaced(ctx, t, &wg, 1000, fmt.Sprintf("outage agent %d", i))
	}
	waitFor(t, "traffic flowing", 10*time.Second, func() bool { return agents[0].Stats().PacketsAcked > 500 })
	for _, a := range c.analyzers {
		a.kill()
	}
	began := time.Now()
	ackedBefore := agents[0].Stats().PacketsAcked + agents[1].Stats().PacketsAcked
	var bytes, age, records float64
	waitFor(t, "the outage to last", outage+30*time.Second, func() bool {
		m := metricsText(t, c.admin)
		bytes, age, records = sumMetric(m, "logdist_spool_bytes"), sumMetric(m, "logdist_spool_oldest_age_seconds"), sumMetric(m, "logdist_spool_records")
		return time.Since(began) >= outage
	})
	acked := agents[0].Stats().PacketsAcked + agents[1].Stats().PacketsAcked - ackedBefore
	t.Logf("after %v with every analyzer down: %d packets acknowledged meanwhile; spool %.0f bytes, %.0f records, oldest %.1f s",
		time.Since(began).Round(time.Millisecond), acked, bytes, records, age)
	if want := uint64(0.7 * 2000 * outage.Seconds()); acked < want {
		t.Errorf("only %d packets acknowledged during the outage, want at least %d: agents stalled", acked, want)
	}
	if records < float64(acked)/2 || bytes <= 0 || age < outage.Seconds()/2 {
		t.Errorf("the spool's metrics during the outage: %.0f bytes, %.0f records, oldest %.1f s", bytes, records, age)
	}
	for i := range c.analyzers {
		c.startAnalyzer(i)
	}
	waitFor(t, "the analyzers back", 20*time.Second, func() bool {
		for _, r := range c.rows() {
			if !r.Healthy {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	for _, a := range agents {
		a.flush(t)
	}
	var lost []string
	waitFor(t, "every acknowledged packet delivered", 120*time.Second, func() bool {
		got := map[string]int{}
		c.eachOut(func(l outLine) { got[l.Agent+"/"+strconv.FormatUint(l.PacketID, 10)]++ })
		lost = lost[:0]
		for i, a := range agents {
			for _, id := range a.ackedIDs() {
				if k := ids[i] + "/" + strconv.FormatUint(id, 10); got[k] == 0 {
					lost = append(lost, k)
				}
			}
		}
		return len(lost) == 0
	})
	waitFor(t, "the spool empty", 30*time.Second, func() bool {
		return sumMetric(metricsText(t, c.admin), "logdist_spool_records") == 0
	})
	t.Logf("%d packets acknowledged in all, every one delivered after a %v outage", len(agents[0].ackedIDs())+len(agents[1].ackedIDs()), outage)
}
