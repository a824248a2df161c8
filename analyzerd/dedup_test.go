package analyzerd

import "testing"

// has and put are contains and add with the agent's window looked up.
func (d *dedup) has(agent []byte, id uint64) bool { return d.contains(d.lookup(agent), id) }
func (d *dedup) put(agent []byte, id uint64)      { d.add(d.lookup(agent), agent, id) }

func TestDedup(t *testing.T) {
	d := newDedup(5000, 2) // rounded up to 8192
	if d.window != 8192 {
		t.Fatalf("window %d, want 8192", d.window)
	}
	a, b, c := []byte("a"), []byte("b"), []byte("c")
	seen := func(agent []byte, id uint64, want bool) {
		t.Helper()
		got := d.has(agent, id)
		if got != want {
			t.Fatalf("contains(%s, %d) = %v, want %v", agent, id, got, want)
		}
		if !got {
			d.put(agent, id)
		}
	}
	base := uint64(1_700_000_000_000_000_000)
	for i := range uint64(10000) {
		seen(a, base+i, false)
	}
	seen(a, base+9999, true)
	seen(a, base+9999-8191, true) // oldest id still in the window
	seen(b, base+9999, false)     // another agent
	seen(a, base+20000, false)    // out of order, ahead
	seen(a, base+15000, false)    // behind the newest, within the window, never seen
	seen(a, base+15000, true)     //
	seen(a, base+10000, false)    // slid out of the window: cannot tell, counted as new
	if d.tooOld != 1 {
		t.Fatalf("tooOld %d, want 1", d.tooOld)
	}
	seen(a, base+20000+1<<40, false) // a restarted client: the window jumps
	seen(a, base+20000, false)
	seen(c, 1, false) // a third agent evicts the least recently used, b
	if d.evicted != 1 || len(d.agents) != 2 || d.agents["b"] != nil {
		t.Fatalf("evicted %d, agents %d", d.evicted, len(d.agents))
	}
	seen(b, base+9999, false) // b was forgotten
}

func TestDedupSlideClearsStaleBits(t *testing.T) {
	d := newDedup(4096, 1)
	a := []byte("a")
	d.put(a, 10)
	// 10 + 4096 lands on 10's slot: 10 must be gone, the new id recorded.
	d.put(a, 10+4096)
	if d.has(a, 10) || !d.has(a, 10+4096) {
		t.Fatal("slot reuse")
	}
	// Slide by less than a chunk, across a chunk border.
	for id := uint64(10 + 4096); id < 20000; id += 1000 {
		d.put(a, id)
	}
	for id := uint64(20000 - 4095); id <= 20000; id++ {
		want := (id-(10+4096))%1000 == 0
		if d.has(a, id) != want {
			t.Fatalf("id %d: contains %v", id, !want)
		}
	}
	// Memory: a window's bitmap is allocated only where ids landed.
	n := 0
	for _, c := range d.agents["a"].chunks {
		if c != nil {
			n++
		}
	}
	if n > 2 {
		t.Fatalf("%d chunks allocated for ids spanning 2", n)
	}
}
