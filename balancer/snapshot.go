package balancer

// snapshot is one immutable state of the selectable analyzers. Writers
// build a new one under Set.mu and publish it with Set.snap.Store; cursors
// compare the published pointer with the one they hold on every pick and
// never write to it. Only the tables of the set's strategy are built.
type snapshot struct {
	// epoch counts the snapshots of a set; it is what View reports as the
	// picker's generation.
	epoch uint64
	// ids are the selectable analyzers, ascending; weights their effective
	// weights (slow start applied), all > 0.
	ids     []uint16
	weights []float64

	// SWRR: the sequence a cursor walks, and the integer weights it was
	// built from (qw[i] slots of qtotal for ids[i]); exact tells whether
	// qw is exactly proportional to weights (see quantize).
	seq    []uint16
	qw     []uint32
	qtotal int
	exact  bool

	// Random: Vose alias table, one column per selectable analyzer.
	alias []aliasColumn

	// Hash: per-analyzer rendezvous seeds (from the name) and 1/weight.
	seeds []uint64
	invW  []float64
}

// emptySnapshot selects nothing; New publishes it so that a cursor never
// meets a nil snapshot.
var emptySnapshot = &snapshot{}

// buildSnapshot builds the tables of strategy st for the selectable
// analyzers ids with effective weights w (both owned by the snapshot from
// here on) and hash seeds seeds (used by Hash only).
func buildSnapshot(st Strategy, epoch uint64, ids []uint16, w []float64, seeds []uint64) *snapshot {
	sn := &snapshot{epoch: epoch, ids: ids, weights: w}
	if len(ids) == 0 {
		return sn
	}
	// The tables work on weights relative to the largest, so that weights
	// near math.MaxFloat64 do not overflow their sums.
	var top float64
	for _, x := range w {
		top = max(top, x)
	}
	switch st {
	case SWRR:
		sn.qw = make([]uint32, len(w))
		sn.qtotal, sn.exact = quantize(w, sn.qw)
		sn.seq = buildSequence(sn.qw, ids, sn.qtotal)
	case Random:
		rel := make([]float64, len(w))
		for i, x := range w {
			rel[i] = x / top
		}
		sn.alias = buildAlias(ids, rel)
	case Hash:
		sn.seeds = seeds
		sn.invW = make([]float64, len(w))
		for i, x := range w {
			sn.invW[i] = top / x // a common factor does not change the winner
		}
	default:
		panic("BUG: balancer: unknown strategy " + st.String())
	}
	return sn
}

// sameSelection reports whether sn already selects ids with weights w, in
// which case the set keeps it and cursors keep their positions.
func (sn *snapshot) sameSelection(ids []uint16, w []float64) bool {
	if len(ids) != len(sn.ids) {
		return false
	}
	for i := range ids {
		if ids[i] != sn.ids[i] || w[i] != sn.weights[i] {
			return false
		}
	}
	return true
}

// targetShare is the share of picks the strategy aims at for ids[i]: the
// quantised share for SWRR, the weight share otherwise.
func (sn *snapshot) targetShare(i int) float64 {
	if sn.qtotal > 0 {
		return float64(sn.qw[i]) / float64(sn.qtotal)
	}
	var sum float64
	for _, x := range sn.weights {
		sum += x / sn.weights[i]
	}
	return 1 / sum
}
