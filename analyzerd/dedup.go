package analyzerd

import (
	"container/list"
)

// chunkBits is the unit in which a window's bitmap is allocated and freed.
const chunkBits = 4096

type chunk [chunkBits / 64]uint64

// dedup remembers which (agent id, packet id) pairs were processed, in
// bounded memory, so that duplicates can be counted.
//
// The approximation: per agent it remembers the last `window` packet ids
// below the highest id seen (a sliding bitmap; agents' packet ids mostly
// increase: the Go client starts at the Unix time in ns and counts up).
// A packet more than `window` ids older than the agent's newest is not
// remembered and counts as new (tooOld); an id far ahead of the newest
// slides the window past everything. At most maxAgents agents are tracked;
// when a new one comes the least recently seen is forgotten (evicted), so
// its later duplicates count as new. Memory is bounded by
// maxAgents × window/8 bytes of bitmap, allocated in 512-byte chunks as ids
// land in them.
//
// Not safe for concurrent use.
type dedup struct {
	window    uint64 // a multiple of chunkBits
	maxAgents int
	agents    map[string]*agentWindow
	lru       *list.List // of *agentWindow, most recently used first

	evicted uint64 // agents forgotten to stay within maxAgents
	tooOld  uint64 // ids not recorded: older than the window
}

type agentWindow struct {
	key    string
	hi     uint64   // highest id recorded
	chunks []*chunk // bitmap ring over ids (hi-window, hi], by id % window
	elem   *list.Element
}

func newDedup(window uint64, maxAgents int) *dedup {
	window = (window + chunkBits - 1) / chunkBits * chunkBits
	return &dedup{
		window:    window,
		maxAgents: maxAgents,
		agents:    make(map[string]*agentWindow),
		lru:       list.New(),
	}
}

// lookup returns the window of agent, nil if it has none: what contains
// and add take, so that a packet costs one map lookup.
func (d *dedup) lookup(agent []byte) *agentWindow { return d.agents[string(agent)] }

// contains reports whether id was recorded in aw (agent's window, from
// lookup) and is still remembered.
func (d *dedup) contains(aw *agentWindow, id uint64) bool {
	if aw == nil || id > aw.hi || aw.hi-id >= d.window {
		return false
	}
	c := aw.chunks[(id%d.window)/chunkBits]
	return c != nil && c.has(id%chunkBits)
}

// add records (agent, id); aw is agent's window from lookup, with
// nothing added or evicted since.
func (d *dedup) add(aw *agentWindow, agent []byte, id uint64) {
	if aw == nil {
		if len(d.agents) >= d.maxAgents {
			old := d.lru.Remove(d.lru.Back()).(*agentWindow)
			delete(d.agents, old.key)
			d.evicted++
		}
		aw = &agentWindow{key: string(agent), hi: id, chunks: make([]*chunk, d.window/chunkBits)}
		aw.elem = d.lru.PushFront(aw)
		d.agents[aw.key] = aw
	} else {
		d.lru.MoveToFront(aw.elem)
	}
	switch {
	case id > aw.hi:
		d.advance(aw, id)
	case aw.hi-id >= d.window:
		d.tooOld++
		return
	}
	pos := id % d.window
	c := aw.chunks[pos/chunkBits]
	if c == nil {
		c = new(chunk)
		aw.chunks[pos/chunkBits] = c
	}
	c.set(id % chunkBits)
}

// advance slides aw's window so that its newest id is id, forgetting the
// ids that leave it.
func (d *dedup) advance(aw *agentWindow, id uint64) {
	n := id - aw.hi
	if n >= d.window {
		clear(aw.chunks)
		aw.hi = id
		return
	}
	// The slots of ids hi+1 … id still hold ids window older: clear them.
	from := aw.hi + 1
	for n > 0 {
		pos := from % d.window
		ci, off := pos/chunkBits, pos%chunkBits
		k := min(chunkBits-off, n)
		if c := aw.chunks[ci]; c != nil {
			if k == chunkBits {
				aw.chunks[ci] = nil
			} else {
				c.clearRange(off, k)
			}
		}
		from += k
		n -= k
	}
	aw.hi = id
}

func (c *chunk) has(bit uint64) bool { return c[bit/64]&(1<<(bit%64)) != 0 }
func (c *chunk) set(bit uint64)      { c[bit/64] |= 1 << (bit % 64) }

func (c *chunk) clearRange(off, n uint64) {
	for b := off; b < off+n; b++ {
		c[b/64] &^= 1 << (b % 64)
	}
}
