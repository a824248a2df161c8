package proxy

// A loop keeps one upstream connection to every analyzer in the registry,
// indexed by the analyzer's balancer ID. When the registry changes, the
// loop reconciles: a new analyzer gets a new upstream (and a dial); one
// removed, or replaced by another under the same ID, has its upstream
// retired. A retiring upstream takes no new packets, hands its backlog to
// the other analyzers at once, and keeps its connection only until the
// analyzer has answered what it carries (at most AckTimeout); what is
// still unanswered then is dispatched elsewhere. It reports nothing to the
// balancer, whose ID it no longer owns.

// upstreamFor returns the loop's connection to analyzer id, looking at the
// registry again if the loop does not know the ID (an analyzer added since
// it last looked).
func (lp *loop) upstreamFor(id int) *upstream {
	if id < len(lp.ups) {
		if u := lp.ups[id]; u != nil {
			return u
		}
	}
	if lp.s.reg.Load() == lp.reg {
		return nil
	}
	lp.reconcile()
	if id < len(lp.ups) {
		return lp.ups[id]
	}
	return nil
}

// reconcile brings the loop's upstreams in line with the registry.
func (lp *loop) reconcile() {
	reg := lp.s.reg.Load()
	if reg == lp.reg {
		return
	}
	lp.reg = reg
	lp.clock()
	for id, u := range lp.ups {
		if u != nil && reg.get(id) != u.st {
			lp.ups[id] = nil
			lp.retire(u)
		}
	}
	for id, st := range reg.byID {
		if st == nil {
			continue
		}
		for len(lp.ups) <= id {
			lp.ups = append(lp.ups, nil)
		}
		if lp.ups[id] == nil {
			u := newUpstream(lp, st)
			lp.ups[id] = u
			u.dial()
		}
	}
	for len(lp.ups) > 0 && lp.ups[len(lp.ups)-1] == nil {
		lp.ups = lp.ups[:len(lp.ups)-1]
	}
	lp.requestFlush()
}

// retire stops using u for new packets and lets it settle what it has.
func (lp *loop) retire(u *upstream) {
	u.retiring = true
	u.retireBy = lp.now + int64(lp.conf.AckTimeout)
	for u.backlog.len() > 0 {
		lp.toRedo(u.backlog.pop())
	}
	u.publishInflight()
	lp.s.log.Info("analyzer removed: settling its connection", "analyzer", u.name, "addr", u.addr, "loop", lp.idx, "in_flight", u.sess.Unresolved())
	lp.retiring = append(lp.retiring, u)
	lp.settleRetiring(u)
}

// settleRetiring closes a retiring upstream that has nothing left in
// flight, or has run out of time, and reports whether it is gone.
func (lp *loop) settleRetiring(u *upstream) bool {
	switch u.state {
	case upIdle:
		return true
	case upDialing:
		return false // onOpen or dialFailed will come, and close it
	case upReady:
		if u.sess.Unresolved() > 0 && lp.now < u.retireBy {
			return false
		}
	}
	u.closeNow(noEvent, "analyzer removed")
	return false
}

// tickRetiring runs the retiring upstreams' timers and forgets those that
// have closed.
func (lp *loop) tickRetiring(now int64) {
	kept := lp.retiring[:0]
	for _, u := range lp.retiring {
		if u.state == upReady {
			u.tick(now)
		}
		u.publishInflight()
		if !lp.settleRetiring(u) {
			kept = append(kept, u)
		}
	}
	clear(lp.retiring[len(kept):])
	lp.retiring = kept
}
