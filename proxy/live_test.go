package proxy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/logdist/logdist/balancer"
	"github.com/logdist/logdist/frame"
)

// openUpstream completes a harness upstream's handshake by hand and makes
// its analyzer healthy.
func (h *harness) openUpstream(t *testing.T, u *upstream) *fakeConn {
	t.Helper()
	fc := &fakeConn{}
	if _, action := u.onOpen(fc); action != gnet.None {
		t.Fatalf("upstream %s refused to open", u.name)
	}
	fc.in = frame.AppendWelcome(nil, &frame.Welcome{Caps: frame.CapZstd, Window: 1024, MaxFrame: 1 << 20})
	u.onTraffic(fc)
	h.lp.s.set.ReportGen(u.id, u.gen, balancer.HeartbeatOK)
	return fc
}

// A new analyzer's ID may be picked before a loop has reconciled with the
// registry: the loop looks again, and the packet goes to an analyzer it
// can reach. With the ID arrays sized at start, such a pick indexed past
// them and panicked the event loop.
func TestPickOfAnAnalyzerAddedSinceDoesNotPanic(t *testing.T) {
	h := newHarness(t, 1)
	s := h.lp.s
	if err := s.AddAnalyzer(AnalyzerConfig{Name: "e", Addr: "127.0.0.1:5", Weight: 100}); err != nil {
		t.Fatal(err)
	}
	m, _ := s.set.Member("e")
	s.set.ReportGen(m.ID, m.Gen, balancer.Connected) // up through another loop
	s.set.ReportGen(m.ID, m.Gen, balancer.HeartbeatOK)
	if len(h.lp.ups) > m.ID {
		t.Fatal("setup: the loop already knows the new analyzer")
	}
	for i := 0; i < 50; i++ {
		h.cycle()
	}
	if m.ID >= len(h.lp.ups) || h.lp.ups[m.ID] == nil {
		t.Fatal("the loop did not take the new analyzer from the registry")
	}
	u := h.lp.ups[m.ID]
	if u.name != "e" || u.gen != m.Gen {
		t.Fatalf("upstream %s gen %d for analyzer e gen %d", u.name, u.gen, m.Gen)
	}
	if a := h.agent.sess; a.Acked() != a.LastSeq() {
		t.Fatalf("%d of %d packets acknowledged", a.Acked(), a.LastSeq())
	}
	// Once connected it takes its share (weight 100 of 101).
	h.ups = append(h.ups, h.openUpstream(t, u))
	h.acks = append(h.acks, nil)
	for i := 0; i < 100; i++ {
		h.cycle()
	}
	if got := h.lp.s.Status(); !strings.Contains(fmt.Sprint(got.Analyzers), "e 127.0.0.1:5") {
		t.Fatalf("status lacks analyzer e: %+v", got.Analyzers)
	}
	var picked uint64
	for _, a := range s.Status().Analyzers {
		if a.Name == "e" {
			picked = a.Packets
		}
	}
	if picked < 90 {
		t.Fatalf("analyzer e got %d of the last 100 packets, want about 99", picked)
	}
}

// A removed analyzer is not picked again; its connection stays until it
// has answered what it holds (those packets are acknowledged to their
// agents as usual); what it never answers is dispatched to the others when
// the connection closes. Its metrics go with it.
func TestRemovedAnalyzerSettlesWhatItHolds(t *testing.T) {
	h := newHarness(t, 1)
	h.ac.keep = true
	const n = 60
	for i := 0; i < n; i++ {
		h.send()
	}
	i := h.holder(1)
	u := h.lp.ups[i]
	held := inFlight(u)
	if len(held) < 4 {
		t.Fatalf("setup: analyzer %s holds %d packets", u.name, len(held))
	}
	s := h.lp.s
	if err := s.RemoveAnalyzer(u.name); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.mset.ListMetricNames() {
		if strings.Contains(name, `analyzer="`+u.name+`"`) {
			t.Fatalf("metric %s still registered after the analyzer was removed", name)
		}
	}
	h.lp.reconfigure()
	if !u.retiring || h.lp.ups[i] == u || len(h.lp.retiring) != 1 {
		t.Fatalf("upstream not retired (retiring %v, %d retiring)", u.retiring, len(h.lp.retiring))
	}
	for k := 0; k < 40; k++ {
		h.send()
		if r, ok := u.sess.Oldest(); ok && r.aseq > uint64(n) {
			t.Fatalf("packet %d went to the removed analyzer", r.aseq)
		}
	}
	// It answers half of what it holds, then its connection is lost.
	half := held[len(held)/2]
	var upTo uint64
	for j := 0; j < u.sess.InFlight(); j++ {
		if r, live := u.sess.Peek(j); live && r.aseq == half {
			upTo = oldestSeq(u) + uint64(j)
		}
	}
	h.ups[i].in = frame.AppendAck(nil, upTo)
	u.onTraffic(h.ups[i])
	u.onClose(nil)
	h.lp.tick()
	h.ackAllBut(-1, nil)
	m := &agentModel{t: t, resolved: map[uint64]string{}}
	m.read(h.ac.out, n+40)
	if len(m.resolved) != n+40 || m.ackPoint != n+40 {
		t.Fatalf("%d of %d packets resolved (ack point %d)", len(m.resolved), n+40, m.ackPoint)
	}
	if h.lp.led.live != 0 || len(h.lp.retiring) != 0 {
		t.Fatalf("%d records live, %d upstreams retiring", h.lp.led.live, len(h.lp.retiring))
	}
}

// An analyzer given a new address is a new analyzer: the old connection
// settles and closes, a new one is made to the new address.
func TestChangedAddressIsANewUpstream(t *testing.T) {
	h := newHarness(t, 1)
	s := h.lp.s
	cfg := s.Config()
	cfg.Analyzers[1].Addr = "127.0.0.1:9"
	old := h.lp.ups[1]
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	h.lp.reconfigure()
	var nu *upstream
	for _, u := range h.lp.ups {
		if u != nil && u.name == old.name {
			nu = u
		}
	}
	if nu == nil || nu == old || nu.addr != "127.0.0.1:9" || nu.gen == old.gen && nu.id == old.id {
		t.Fatalf("no new upstream for the new address (old %+v)", old)
	}
	if !old.retiring {
		t.Fatal("the old address's upstream is not retiring")
	}
	if s.ConfigVersion() != 2 {
		t.Fatalf("config version %d, want 2", s.ConfigVersion())
	}
}

// Every record a loop holds is in exactly one place, in the state that
// place names, whatever happens: sends, answers of every kind, lost
// connections, GOAWAY, agents leaving, analyzers removed and added, ticks.
// At the end, with every analyzer answering, every packet of the agent is
// resolved exactly once and no record is left.
func TestLedgerModel(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { ledgerModel(t, seed) })
	}
}

func ledgerModel(t *testing.T, seed uint64) {
	h := newHarnessCaps(t, 1, frame.CapZstd|frame.CapSack)
	h.ac.keep = true
	s := h.lp.s
	rng := rand.New(rand.NewPCG(seed, 7))
	m := &agentModel{t: t, resolved: map[uint64]string{}}
	conns := map[*upstream]*fakeConn{}
	for i, u := range h.lp.ups {
		conns[u] = h.ups[i]
	}
	sent := uint64(0)
	nextName := 0
	live := func() []*upstream { // every upstream the loop holds, retiring ones too
		var us []*upstream
		for _, u := range h.lp.ups {
			if u != nil {
				us = append(us, u)
			}
		}
		return append(us, h.lp.retiring...)
	}
	answer := func(u *upstream, in []byte) {
		if fc := conns[u]; fc != nil && u.c != nil {
			fc.in = in
			if u.onTraffic(fc) == gnet.Close {
				u.onClose(nil)
			}
		}
	}
	for step := 0; step < 2000; step++ {
		us := live()
		u := us[rng.IntN(len(us))]
		switch k := rng.IntN(100); {
		case k < 45:
			if h.agent.sess.Unresolved() < int(h.agent.sess.Window()) {
				h.send()
				sent++
			}
		case k < 70 && u.sess.InFlight() > 0:
			answer(u, frame.AppendAck(nil, oldestSeq(u)+uint64(rng.IntN(u.sess.InFlight()))))
		case k < 76 && u.sess.Unresolved() > 0:
			r, _ := u.sess.Oldest()
			_ = r
			answer(u, frame.AppendBusy(nil, oldestSeq(u), uint32(rng.IntN(3))))
		case k < 80 && u.sess.Unresolved() > 0:
			answer(u, frame.AppendError(nil, oldestSeq(u), frame.CodeRejected, "no"))
		case k < 83 && u.c != nil:
			u.onClose(nil) // the connection is lost
		case k < 85 && u.c != nil:
			answer(u, frame.AppendGoAway(nil, frame.CodeShutdown, "draining"))
		case k < 88 && u.c == nil && !u.retiring:
			conns[u] = h.openUpstream(t, u) // reconnected
		case k < 90:
			h.lp.base = h.lp.base.Add(-time50ms)
			h.lp.tick()
		case k < 92 && len(s.Config().Analyzers) > 1:
			names := s.Config().Analyzers
			if err := s.RemoveAnalyzer(names[rng.IntN(len(names))].Name); err != nil {
				t.Fatal(err)
			}
			h.lp.reconfigure()
		case k < 94:
			nextName++
			if err := s.AddAnalyzer(AnalyzerConfig{Name: fmt.Sprintf("n%d", nextName), Addr: fmt.Sprintf("127.0.0.2:%d", nextName), Weight: float64(1 + rng.IntN(5))}); err != nil {
				t.Fatal(err)
			}
			h.lp.reconfigure()
			for _, nu := range h.lp.ups {
				if nu != nil && nu.c == nil && nu.state == upDialing {
					conns[nu] = h.openUpstream(t, nu)
				}
			}
		case k < 96:
			cfg := s.Config()
			a := &cfg.Analyzers[rng.IntN(len(cfg.Analyzers))]
			a.Weight = float64(rng.IntN(4))
			if err := s.Reconfigure(cfg); err != nil {
				t.Fatal(err)
			}
			h.lp.reconfigure()
		}
		h.lp.flush()
		checkLedger(t, h)
		m.read(h.ac.out, sent)
		h.ac.out = h.ac.out[:0]
	}
	// Settle: every analyzer connected and answering everything, weights
	// positive, until nothing is left. Forced up: the fake analyzers answer
	// no heartbeat, and the balancer's breakers run on the real clock, so
	// an analyzer the random steps took down could stay down while a
	// packet waits out a retry's backoff (seconds of this loop's clock).
	cfg := s.Config()
	for i := range cfg.Analyzers {
		cfg.Analyzers[i].Weight = 1
		cfg.Analyzers[i].Admin = balancer.ForcedUp
	}
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	h.lp.reconfigure()
	for round := 0; round < 100 && (h.lp.led.live > 0 || len(h.lp.retiring) > 0); round++ {
		for _, u := range live() {
			if u.c == nil && !u.retiring {
				conns[u] = h.openUpstream(t, u)
			}
			if u.sess.InFlight() > 0 {
				answer(u, frame.AppendAck(nil, u.sess.Seq()))
			}
		}
		h.lp.base = h.lp.base.Add(-time50ms * 20) // past the BUSY delays and the retiring deadline
		h.lp.tick()
		checkLedger(t, h)
	}
	m.read(h.ac.out, sent)
	if uint64(len(m.resolved)) != sent || m.ackPoint != sent {
		var missing []uint64
		for seq := uint64(1); seq <= sent && len(missing) < 10; seq++ {
			if _, ok := m.resolved[seq]; !ok {
				missing = append(missing, seq)
			}
		}
		for _, u := range live() {
			t.Logf("upstream %s: state %d, accepting %v, late %v, in flight %d, backlog %d, retiring %v", u.name, u.state, u.accepting(), u.late, u.sess.InFlight(), u.backlog.len(), u.retiring)
		}
		t.Logf("selectable %v, regather %+v, warming %v", h.lp.cur.Selectable(), h.lp.rg, h.lp.warming)
		t.Fatalf("%d of %d packets resolved, ack point %d; unresolved %v; %d records live (%d waiting, %d delayed, %d retrying, %d redo), agent open: %v",
			len(m.resolved), sent, m.ackPoint, missing, h.lp.led.live, h.lp.led.waiting.len(), h.lp.led.delayed.len(), len(h.lp.led.retrying), len(h.lp.led.redo),
			h.agent.sess.Unresolved())
	}
	if h.lp.led.live != 0 {
		t.Fatalf("%d records left", h.lp.led.live)
	}
}

const time50ms = 50_000_000

// checkLedger finds every live record where its state says it is.
func checkLedger(t *testing.T, h *harness) {
	t.Helper()
	lp := h.lp
	seen := map[*record]string{}
	place := func(r *record, where string, want recState) {
		t.Helper()
		if r.state != want {
			t.Fatalf("record in %s has state %s", where, r.state)
		}
		if prev, ok := seen[r]; ok {
			t.Fatalf("record both in %s and in %s", prev, where)
		}
		seen[r] = where
	}
	for i := 0; i < lp.led.waiting.len(); i++ {
		place(lp.led.waiting.at(i), "the wait queue", recWaiting)
	}
	for i := 0; i < lp.led.delayed.len(); i++ {
		place(lp.led.delayed.at(i), "the delayed queue", recDelayed)
	}
	for _, r := range lp.led.retrying {
		place(r, "the retry heap", recDelayed)
	}
	for _, r := range lp.led.redo {
		place(r, "the redo list", recRedo)
	}
	if j := lp.sp.next; j != nil {
		for _, r := range append(append([]*record(nil), j.recs...), j.spill...) {
			place(r, "the next spool append", recSpooling)
		}
	}
	for _, u := range append(append([]*upstream(nil), lp.ups...), lp.retiring...) {
		if u == nil {
			continue
		}
		for i := 0; i < u.backlog.len(); i++ {
			place(u.backlog.at(i), u.name+"'s backlog", recAssigned)
		}
		for i := 0; i < u.sess.InFlight(); i++ {
			if r, live := u.sess.Peek(i); live {
				place(r, u.name+"'s window", recInFlight)
			}
		}
	}
	if int64(len(seen)) != lp.led.live {
		t.Fatalf("%d records live, %d found in their places", lp.led.live, len(seen))
	}
}

// When SyslogMaxSenders batches are open, a new sender closes the batch
// opened first, and the linger closes batches in the order they opened,
// stopping at the first one young enough.
func TestSyslogBatchesCloseOldestFirst(t *testing.T) {
	h := newHarnessOpts(t, harnessOpts{msgs: 1, caps: frame.CapZstd, edit: func(c *Config) { c.SyslogMaxSenders = 3 }})
	lp := h.lp
	lp.initSyslog()
	from := func(i byte) {
		lp.clock()
		lp.ingestSyslog([]byte("<13>Nov 26 21:00:00 web-1 app[1]: hello"), netip.AddrFrom4([4]byte{10, 0, 0, i}))
	}
	sealed := func() []string {
		var ids []string
		for _, u := range lp.ups {
			ids = append(ids, inFlightRecords(u)...)
		}
		return ids
	}
	from(1)
	from(2)
	from(3)
	from(2) // joins its open batch: the order is by opening
	from(4) // one too many: 10.0.0.1's closes
	if got := strings.Join(sealed(), " "); got != "1" {
		t.Fatalf("sealed %q, want the first sender's batch", got)
	}
	from(5) // then 10.0.0.2's
	if got := len(sealed()); got != 2 || lp.syslog.oldest.addr.String() != "10.0.0.3" {
		t.Fatalf("%d sealed, oldest open %s; want 2 sealed and 10.0.0.3 oldest", got, lp.syslog.oldest.addr)
	}
	lp.sealOld(lp.now+int64(lp.conf.SyslogLinger), true)
	if len(lp.syslog.batches) != 0 || lp.syslog.oldest != nil || lp.syslog.newest != nil || lp.batchesOpen.Load() {
		t.Fatalf("%d batches open after sealing all", len(lp.syslog.batches))
	}
}

// inFlightRecords returns the last byte of the syslog sender of every
// packet u holds.
func inFlightRecords(u *upstream) []string {
	var out []string
	for i := 0; i < u.sess.InFlight(); i++ {
		if r, live := u.sess.Peek(i); live {
			var p frame.Packet
			if err := frame.NewDecoder(frame.DefaultLimits()).Decode(frame.Header(r.buf), r.buf[frame.HeaderSize:], &p); err == nil {
				s := string(p.AgentID)
				out = append(out, s[strings.LastIndexByte(s, '.')+1:])
			}
		}
	}
	return out
}

// A weight ramp is recorded in the configuration with its start, shown in
// the status, carried over by a Reconfigure to the same configuration (a
// rollback restores a ramp where it was) and ended by a plain weight.
func TestWeightRampInConfig(t *testing.T) {
	h := newHarness(t, 1)
	s := h.lp.s
	if err := s.SetWeightRamp("b", 0.6, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cfg := s.Config()
	r := cfg.Analyzers[1].Ramp
	if cfg.Analyzers[1].Weight != 0.6 || r.From != 0.3 || r.Over != 10*time.Second || r.Start.IsZero() {
		t.Fatalf("configuration after the ramp: %+v", cfg.Analyzers[1])
	}
	row := s.Status().Analyzers[1]
	if row.Ramp == nil || row.Ramp.From != 0.3 || !row.Ramp.Ends.Equal(r.Start.Add(10*time.Second).UTC()) {
		t.Fatalf("status row: %+v", row)
	}
	if err := s.SetWeight("b", 0.5); err != nil {
		t.Fatal(err)
	}
	if a := s.Config().Analyzers[1]; a.Ramp != (balancer.Ramp{}) || s.Status().Analyzers[1].Ramp != nil {
		t.Fatalf("a plain weight left the ramp: %+v", a)
	}
	if err := s.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	if a := s.Config().Analyzers[1]; a.Ramp != r {
		t.Fatalf("Reconfigure to the configuration with the ramp: %+v, want ramp %+v", a.Ramp, r)
	}
	if v := s.Balancer().View().Analyzers[1]; v.Ramp != r {
		t.Fatalf("balancer ramp %+v, want %+v", v.Ramp, r)
	}
}
