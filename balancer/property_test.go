package balancer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// weightGen draws the weights operators and slow start produce: zero,
// integers, decimals, arbitrary floats, and tiny ones.
func weightGen() *rapid.Generator[float64] {
	return rapid.OneOf(
		rapid.Just(0.0),
		rapid.Map(rapid.IntRange(1, 20), func(i int) float64 { return float64(i) }),
		rapid.Map(rapid.IntRange(1, 300), func(i int) float64 { return float64(i) / 100 }),
		rapid.Float64Range(0.001, 10),
		rapid.Just(1e-7),
	)
}

// segment is one cursor's picks from one snapshot: the accuracy bound
// holds for it.
type segment struct {
	sn     *snapshot
	counts map[int]int64
	n      int64
}

// checkSegment asserts, for SWRR, floor(n·s) <= count <= ceil(n·s) with s
// the quantised share, and |count - n·s_exact| < 1 + n·(quantisation
// error) with s_exact the effective weight renormalised over the
// selectable set.
func checkSegment(t tb, seg *segment, what string) {
	helper(t)
	sn := seg.sn
	if sn.qtotal == 0 {
		return
	}
	var sum float64
	for _, w := range sn.weights {
		sum += w
	}
	for i, id := range sn.ids {
		c := seg.counts[int(id)]
		num := seg.n * int64(sn.qw[i])
		lo, hi := num/int64(sn.qtotal), (num+int64(sn.qtotal)-1)/int64(sn.qtotal)
		if c < lo || c > hi {
			t.Fatalf("%s: analyzer %d got %d of %d picks, want in [%d, %d] (weights %v, quantised %v)",
				what, id, c, seg.n, lo, hi, sn.weights, sn.qw)
		}
		slack := 1.0
		if !sn.exact {
			slack += float64(seg.n) / maxSequence
		}
		if d := math.Abs(float64(c) - float64(seg.n)*sn.weights[i]/sum); d >= slack+1e-9 {
			t.Fatalf("%s: analyzer %d got %d of %d picks, %.4f from its weight share (bound %.4f)",
				what, id, c, seg.n, d, slack)
		}
	}
}

// Random weight vectors, K cursors picking in a random interleaving: every
// cursor meets the prefix bound at every pick, the cursors together are
// within K, weight 0 is never picked, and the quantisation meets its
// stated precision.
func TestPropSWRRBound(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		weights := rapid.SliceOfN(weightGen(), 1, 12).Draw(t, "weights")
		k := rapid.IntRange(1, 4).Draw(t, "cursors")
		seed := rapid.Uint64().Draw(t, "interleaving")
		s := newTestSet(t, testConfig(SWRR, nil), weights...)
		sn := s.snap.Load()
		curs := make([]*Cursor, k)
		for i := range curs {
			curs[i] = s.NewCursor()
			defer curs[i].Close()
		}
		if len(sn.ids) == 0 {
			for _, c := range curs {
				if id, ok := c.Pick(nil); ok || id != -1 {
					t.Fatalf("all weights zero: Pick = %d, %v", id, ok)
				}
			}
			return
		}
		checkQuantError(t, sn.weights, sn.qw, sn.qtotal, sn.exact)
		segs := make([]*segment, k)
		for i := range segs {
			segs[i] = &segment{sn: sn, counts: map[int]int64{}}
		}
		agg := &segment{sn: sn, counts: map[int]int64{}}
		picks := min(3*sn.qtotal+7, 6000)
		rng := rand.New(rand.NewPCG(seed, 1))
		for p := range picks {
			ci := rng.IntN(k)
			id, ok := curs[ci].Pick(nil)
			if !ok {
				t.Fatal("Pick found nothing with positive weights")
			}
			if weights[id] == 0 {
				t.Fatalf("picked analyzer %d of weight 0", id)
			}
			seg := segs[ci]
			seg.counts[id]++
			seg.n++
			agg.counts[id]++
			agg.n++
			if p%7 == 0 || p == picks-1 {
				checkSegment(t, seg, fmt.Sprintf("cursor %d", ci))
			}
		}
		// Together: within K of N·share (and between the sums of the
		// cursors' floors and ceilings).
		for i, id := range sn.ids {
			exact := float64(agg.n) * float64(sn.qw[i]) / float64(sn.qtotal)
			if d := math.Abs(float64(agg.counts[int(id)]) - exact); d >= float64(k) {
				t.Fatalf("%d cursors: analyzer %d got %d of %d, %.3f from N·share", k, id, agg.counts[int(id)], agg.n, d)
			}
		}
	})
}

// A random run of health events, re-weights, admin changes, clock steps
// (with slow start) and picks on several cursors, for every strategy:
// after each change no pick returns an analyzer that the set does not
// consider selectable, weight 0 and down analyzers included, and for SWRR
// every cursor's picks since its last snapshot change meet the bound
// against the effective weights renormalised over the selectable set.
func TestPropHealthFlipsAndReweights(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := Strategy(rapid.IntRange(0, 2).Draw(t, "strategy"))
		n := rapid.IntRange(1, 6).Draw(t, "analyzers")
		clk := newFakeClock()
		cfg := testConfig(st, clk)
		cfg.SlowStart = 4 * time.Second
		cfg.SlowStartSteps = 4
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			w := rapid.Map(rapid.IntRange(0, 40), func(i int) float64 { return float64(i) / 10 }).Draw(t, "weight")
			if _, err := s.Add(AnalyzerConfig{Name: fmt.Sprint("a", i), Addr: "x:1", Weight: w}); err != nil {
				t.Fatal(err)
			}
		}
		curs := make([]*Cursor, rapid.IntRange(1, 3).Draw(t, "cursors"))
		segs := make([]*segment, len(curs))
		for i := range curs {
			curs[i] = s.NewCursor()
			defer curs[i].Close()
		}
		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		for step := range steps {
			name := fmt.Sprint("a", rapid.IntRange(0, n-1).Draw(t, "analyzer"))
			id, _ := s.Lookup(name)
			switch op := rapid.IntRange(0, 5).Draw(t, "op"); op {
			case 0, 1: // health events, enough to flip it sometimes
				ev := Event(rapid.IntRange(0, int(numEvents)-1).Draw(t, "event"))
				for range rapid.IntRange(1, 4).Draw(t, "times") {
					s.Report(id, ev)
				}
			case 2:
				w := rapid.Map(rapid.IntRange(0, 40), func(i int) float64 { return float64(i) / 10 }).Draw(t, "new weight")
				if err := s.SetWeight(name, w); err != nil {
					t.Fatal(err)
				}
			case 3:
				admin := []func(string) error{s.Enable, s.Drain, s.ForceDown, s.ForceUp}
				if err := admin[rapid.IntRange(0, 3).Draw(t, "admin")](name); err != nil {
					t.Fatal(err)
				}
			case 4:
				clk.Advance(time.Duration(rapid.IntRange(0, 3000).Draw(t, "ms")) * time.Millisecond)
				s.Tick()
			}
			// The rule, from the set's own state: which IDs may be picked.
			v := s.View()
			allowed := map[int]bool{}
			for _, a := range v.Analyzers {
				want := a.Weight > 0 && (a.Admin == ForcedUp || a.Admin == Enabled && a.Health == Up)
				if a.Selectable != want {
					t.Fatalf("step %d: %s selectable %v, rule says %v (%+v)", step, a.Name, a.Selectable, want, a)
				}
				allowed[a.ID] = want
			}
			sn := s.snap.Load()
			for ci, c := range curs {
				for range rapid.IntRange(0, 150).Draw(t, "picks") {
					id, ok := c.Pick([]byte(fmt.Sprint("agent-", step)))
					if !ok {
						if len(sn.ids) > 0 {
							t.Fatalf("step %d: Pick found nothing, %d selectable", step, len(sn.ids))
						}
						continue
					}
					if !allowed[id] {
						t.Fatalf("step %d: picked %d, which is not selectable (%+v)", step, id, v.Analyzers)
					}
					if segs[ci] == nil || segs[ci].sn != sn {
						segs[ci] = &segment{sn: sn, counts: map[int]int64{}}
					}
					segs[ci].counts[id]++
					segs[ci].n++
				}
				if segs[ci] != nil && segs[ci].sn == sn {
					checkSegment(t, segs[ci], fmt.Sprintf("step %d cursor %d", step, ci))
				}
			}
		}
	})
}

// The same input gives the same picks: two sets built alike pick alike,
// for every strategy (Random with the same Seed).
func TestPropDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := Strategy(rapid.IntRange(0, 2).Draw(t, "strategy"))
		weights := rapid.SliceOfN(weightGen(), 1, 8).Draw(t, "weights")
		a := newTestSet(t, testConfig(st, nil), weights...)
		b := newTestSet(t, testConfig(st, nil), weights...)
		ca, cb := a.NewCursor(), b.NewCursor()
		defer ca.Close()
		defer cb.Close()
		for i := range 500 {
			key := []byte(fmt.Sprint("agent-", i))
			ia, oka := ca.Pick(key)
			ib, okb := cb.Pick(key)
			if ia != ib || oka != okb {
				t.Fatalf("pick %d: %d,%v vs %d,%v", i, ia, oka, ib, okb)
			}
		}
	})
}
