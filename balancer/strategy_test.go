package balancer

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestParseStrategy(t *testing.T) {
	f := func(name string, want Strategy) {
		t.Helper()
		got, err := ParseStrategy(name)
		if err != nil || got != want {
			t.Fatalf("ParseStrategy(%q) = %v, %v; want %v", name, got, err, want)
		}
		if back, _ := ParseStrategy(got.String()); back != got {
			t.Fatalf("%v does not round-trip through String", got)
		}
	}
	f("swrr", SWRR)
	f("random", Random)
	f("HASH", Hash)
	_, err := ParseStrategy("roundrobin")
	if !errors.Is(err, ErrUnknownStrategy) || !strings.Contains(err.Error(), "swrr, random, hash") {
		t.Fatalf("ParseStrategy(roundrobin) error %q: want ErrUnknownStrategy listing the valid names", err)
	}
	var st Strategy
	if err := st.UnmarshalText([]byte("hash")); err != nil || st != Hash {
		t.Fatalf("UnmarshalText: %v, %v", st, err)
	}
}

// hashOwners maps keys to analyzers through a fresh cursor.
func hashOwners(t tb, s *Set, keys int) []int {
	c := s.NewCursor()
	defer c.Close()
	owner := make([]int, keys)
	for k := range owner {
		id, ok := c.Pick([]byte(fmt.Sprintf("agent-%05d", k)))
		if !ok {
			t.Fatal("hash: nothing selectable")
		}
		owner[k] = id
	}
	return owner
}

// Weighted rendezvous moves only what it must: when an analyzer leaves,
// only its keys move; when one joins or gains weight, keys move only to it;
// when one loses weight, keys move only away from it.
func TestPropHashMinimalMovement(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 10).Draw(t, "n")
		weights := rapid.SliceOfN(rapid.Float64Range(0.1, 5), n, n).Draw(t, "weights")
		s := newTestSet(t, testConfig(Hash, nil), weights...)
		const keys = 400
		before := hashOwners(t, s, keys)
		victim := rapid.IntRange(0, n-1).Draw(t, "victim")
		name := fmt.Sprint("a", victim)
		check := func(what string, after []int, moveOK func(from, to int) bool) {
			for k := range before {
				if before[k] != after[k] && !moveOK(before[k], after[k]) {
					t.Fatalf("%s %s: key %d moved %d -> %d", what, name, k, before[k], after[k])
				}
			}
		}
		// Down: only the victim's keys move.
		for range s.cfg.Fall {
			s.Report(victim, WriteError)
		}
		down := hashOwners(t, s, keys)
		check("down", down, func(from, to int) bool { return from == victim })
		for k := range down {
			if down[k] == victim {
				t.Fatalf("key %d still on the down analyzer", k)
			}
		}
		// Back up (a fresh set, so no breaker in the way): keys return.
		s2 := newTestSet(t, testConfig(Hash, nil), weights...)
		if got := hashOwners(t, s2, keys); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Fatal("the same set maps keys differently")
		}
		// Heavier: keys move only to it. Lighter: only away from it.
		if err := s2.SetWeight(name, weights[victim]*2); err != nil {
			t.Fatal(err)
		}
		check("heavier", hashOwners(t, s2, keys), func(from, to int) bool { return to == victim })
		if err := s2.SetWeight(name, weights[victim]/2); err != nil {
			t.Fatal(err)
		}
		check("lighter", hashOwners(t, s2, keys), func(from, to int) bool { return from == victim })
		// Removed and re-added under the same name: same keys as before.
		if err := s2.Remove(name); err != nil {
			t.Fatal(err)
		}
		id, err := s2.Add(AnalyzerConfig{Name: name, Addr: "x:1", Weight: weights[victim]})
		if err != nil || id != victim {
			t.Fatalf("re-add: %d, %v", id, err)
		}
		bringUp(t, s2, id)
		if got := hashOwners(t, s2, keys); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Fatal("re-adding an analyzer under its name did not restore its keys")
		}
	})
}

// Over many keys each analyzer's share of keys follows its weight
// (a binomial: within 5 standard deviations).
func TestHashShares(t *testing.T) {
	weights := []float64{4, 3, 2, 1}
	s := newTestSet(t, testConfig(Hash, nil), weights...)
	const keys = 40000
	counts := map[int]int{}
	for _, id := range hashOwners(t, s, keys) {
		counts[id]++
	}
	checkBinomial(t, "hash", counts, weights, keys)
}

func TestRandomShares(t *testing.T) {
	weights := []float64{0.7, 0.3, 0, 1.5}
	s := newTestSet(t, testConfig(Random, nil), weights...)
	c := s.NewCursor()
	defer c.Close()
	const n = 200000
	counts := pickN(t, c, n, nil)
	if counts[2] != 0 {
		t.Fatalf("weight 0 picked %d times", counts[2])
	}
	checkBinomial(t, "random", counts, weights, n)
}

func checkBinomial(t *testing.T, what string, counts map[int]int, weights []float64, n int) {
	t.Helper()
	var sum float64
	for _, w := range weights {
		sum += w
	}
	for i, w := range weights {
		p := w / sum
		sd := math.Sqrt(float64(n) * p * (1 - p))
		if d := math.Abs(float64(counts[i]) - float64(n)*p); d > 5*sd+1e-9 {
			t.Fatalf("%s: analyzer %d got %d of %d, expected %.0f ± %.0f", what, i, counts[i], n, float64(n)*p, 5*sd)
		}
	}
}

// Nothing selectable, for every strategy and every way of getting there:
// Pick says so, with no panic and no division by zero.
func TestNothingSelectable(t *testing.T) {
	for _, st := range []Strategy{SWRR, Random, Hash} {
		t.Run(st.String(), func(t *testing.T) {
			check := func(what string, s *Set) {
				t.Helper()
				c := s.NewCursor()
				defer c.Close()
				for range 3 {
					if id, ok := c.Pick([]byte("k")); ok || id != -1 {
						t.Fatalf("%s: Pick = %d, %v; want -1, false", what, id, ok)
					}
				}
				c.Account(-1, 1, 1) // the id of a failed pick: ignored
				if v := s.View(); v.Packets != 0 || v.MaxShareError != 0 || v.Selectable != 0 {
					t.Fatalf("%s: view %+v", what, v)
				}
			}
			empty, err := New(testConfig(st, nil))
			if err != nil {
				t.Fatal(err)
			}
			check("empty set", empty)
			check("all weights zero", newTestSet(t, testConfig(st, nil), 0, 0, 0))
			s := newTestSet(t, testConfig(st, nil), 1, 2)
			for _, id := range []int{0, 1} {
				for range s.cfg.Fall {
					s.Report(id, HeartbeatMissed)
				}
			}
			check("all down", s)
			d := newTestSet(t, testConfig(st, nil), 1, 2)
			_ = d.Drain("a0")
			_ = d.ForceDown("a1")
			check("drained and forced down", d)
			r := newTestSet(t, testConfig(st, nil), 1)
			_ = r.Remove("a0")
			check("all removed", r)
		})
	}
}

// Weights near math.MaxFloat64 overflow no sum.
func TestHugeWeights(t *testing.T) {
	for _, st := range []Strategy{SWRR, Random, Hash} {
		s := newTestSet(t, testConfig(st, nil), math.MaxFloat64, math.MaxFloat64/2, 1)
		c := s.NewCursor()
		counts := map[int]int{}
		for i := range 3000 {
			id, ok := c.Pick([]byte(fmt.Sprint(i)))
			if !ok {
				t.Fatalf("%s: nothing picked", st)
			}
			counts[id]++
		}
		c.Close()
		if counts[0] < 1700 || counts[1] < 700 || counts[2] > 5 {
			t.Fatalf("%s: counts %v for weights max, max/2, 1", st, counts)
		}
		v := s.View()
		if math.Abs(v.Analyzers[0].TargetShare-2.0/3) > 1e-4 || math.Abs(v.Analyzers[0].ConfiguredShare-2.0/3) > 1e-12 {
			t.Fatalf("%s: target share %v, configured share %v", st, v.Analyzers[0].TargetShare, v.Analyzers[0].ConfiguredShare)
		}
	}
}

// naiveRendezvous is pickRendezvous without the shortcuts.
func naiveRendezvous(sn *snapshot, key []byte) int {
	k := hashKey(key)
	best, bestScore := -1, math.Inf(-1)
	for i, seed := range sn.seeds {
		u := (float64(fmix64(k^seed)>>11) + 0.5) * 0x1p-53
		if s := math.Log(u) * sn.invW[i]; s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// The bracketing shortcuts never change the winner.
func TestPropRendezvousMatchesNaive(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 40).Draw(t, "n")
		w := rapid.SliceOfN(rapid.OneOf(rapid.Float64Range(0.01, 10), rapid.Just(1.0), rapid.Just(1e-6)), n, n).Draw(t, "weights")
		ids := make([]uint16, n)
		seeds := make([]uint64, n)
		for i := range ids {
			ids[i] = uint16(i)
			seeds[i] = nameSeed(fmt.Sprint("a", i))
		}
		sn := buildSnapshot(Hash, 1, ids, w, seeds)
		for k := range 300 {
			key := []byte(fmt.Sprint("agent-", k))
			if got, want := pickRendezvous(sn, key), naiveRendezvous(sn, key); got != want {
				t.Fatalf("key %s: %d, naive %d (weights %v)", key, got, want, w)
			}
		}
	})
}
