package proxy

import (
	"sync"
	"time"

	"github.com/logdist/logdist/proxy/status"
)

// shareSpan is the window logdist_analyzer_window_share covers.
const shareSpan = time.Minute

// shareWindow turns the analyzers' cumulative packet counts into their
// shares over about the last minute, for logdist_analyzer_window_share and
// logdist_analyzer_share_skew. It samples the counts when metrics are
// scraped (at most one sample a second), so it costs nothing between
// scrapes; the window reaches back to the newest sample at least
// shareSpan old, or to the oldest sample while none is that old, or to
// the start at the first scrape.
type shareWindow struct {
	mu      sync.Mutex
	samples []shareSample // oldest first; at most shareSpan/time.Second+2
}

type shareSample struct {
	at      time.Time
	packets map[string]uint64 // by analyzer name
}

// windowShare is one analyzer's share of the packets dispatched in the
// window, and that share minus the share its effective weight asks for.
type windowShare struct {
	share, skew float64
}

// observe samples st and returns each analyzer's windowShare.
func (w *shareWindow) observe(st status.Status) map[string]windowShare {
	now := st.Time
	cur := make(map[string]uint64, len(st.Analyzers))
	for _, a := range st.Analyzers {
		cur[a.Name] = a.Packets
	}
	w.mu.Lock()
	if n := len(w.samples); n == 0 || now.Sub(w.samples[n-1].at) >= time.Second {
		w.samples = append(w.samples, shareSample{at: now, packets: cur})
	}
	for len(w.samples) > 1 && !w.samples[1].at.After(now.Add(-shareSpan)) {
		w.samples = w.samples[1:]
	}
	base := w.samples[0]
	if base.at.Equal(now) {
		base = shareSample{} // the first sample: since the start
	}
	w.mu.Unlock()

	var total uint64
	var weights float64
	delta := make(map[string]uint64, len(cur))
	for _, a := range st.Analyzers {
		d := a.Packets
		if b, ok := base.packets[a.Name]; ok && b <= d {
			d -= b // else it was removed and added again since: all of it is new
		}
		delta[a.Name] = d
		total += d
		weights += a.EffectiveWeight
	}
	out := make(map[string]windowShare, len(cur))
	for _, a := range st.Analyzers {
		var ws windowShare
		if total > 0 {
			ws.share = float64(delta[a.Name]) / float64(total)
			want := 0.0
			if weights > 0 {
				want = a.EffectiveWeight / weights
			}
			ws.skew = ws.share - want
		}
		out[a.Name] = ws
	}
	return out
}
