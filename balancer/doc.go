// Package balancer is logdist's analyzer set: the analyzers' weights,
// administrative and health state, and the lock-free weighted picker the
// proxy asks, once per packet, where the packet goes.
//
// # Snapshot and cursors
//
// Everything that changes what may be picked — Add, Remove, SetWeight,
// Drain/ForceDown/ForceUp/Enable, a health transition reported with Report,
// a slow-start step — happens under the set's mutex and, when the selection
// changed, builds a new immutable snapshot (the selectable analyzers, their
// effective weights and the strategy's precomputed table) and publishes it
// with an atomic pointer store. A pick never takes a lock: each event loop
// owns a Cursor, whose Pick loads the snapshot pointer, compares it with
// the one it last used, and picks from it. Once Report or SetWeight has
// returned, every pick that starts afterwards sees the change: a down
// analyzer is never picked after the swap.
//
//	set, _ := balancer.New(balancer.DefaultConfig())
//	id, _ := set.Add(balancer.AnalyzerConfig{Name: "a1", Addr: "127.0.0.1:7501", Weight: 0.4})
//	cur := set.NewCursor()           // one per event loop
//	id, ok := cur.Pick(agentID)      // ok == false: nothing selectable, queue
//	cur.Account(id, msgs, bytes)     // counters, per cursor
//	set.Report(id, balancer.HeartbeatOK)
//	v := set.View()                  // admin API, metrics
//
// IDs are small integers below Config.MaxAnalyzers, lowest free first, so
// the proxy indexes its per-loop connection arrays by them. An ID is reused
// only after Remove; AnalyzerView.Gen tells the occupants apart. Version and
// Changed tell the proxy that something changed (for example an analyzer
// to dial).
//
// # Strategies and accuracy
//
// SWRR (the default) walks a precomputed smooth weighted round-robin
// sequence: a pick is a slice index and an increment, with no allocation.
// Weights are scaled to integers — exactly when they are decimals whose
// reduced integers sum to at most 65536, otherwise by largest remainders
// over 65536 slots, each share then within 1/65536 (1.5e-5) of its
// weight's share. The sequence, at most 65536 long, is laid out by
// earliest deadline first over Pfair windows, which guarantees for every
// prefix of N picks from a cursor since its snapshot was published
//
//	floor(N·share_i) <= count_i <= ceil(N·share_i)     (so |count_i - N·share_i| < 1)
//
// and for K cursors together |count_i - N·share_i| < K. With weights
// 0.7/0.3, 10,000 picks give exactly 7000 and 3000. (nginx's smooth WRR
// order, the usual choice, cannot promise this: it may leave an analyzer
// more than one pick behind; see swrr.go.) The bound holds per snapshot:
// a cursor restarts at the beginning of every new sequence, so over a run
// with E snapshot changes an analyzer is within E+1 (per cursor) of the
// sum of its per-snapshot targets.
//
// Random draws from a Vose alias table with a per-cursor PCG: O(1), for
// comparison with what the original design did; its shares drift like a
// binomial. Hash is weighted rendezvous hashing on the key given to Pick,
// for sticky routing per agent: a key moves only when its analyzer leaves
// or another one now outscores it; O(n) per pick with few logarithms (see
// hash.go).
//
// # Health
//
// Report feeds the events the proxy sees into a per-analyzer state
// machine: Rise consecutive successes bring an analyzer up, Fall
// consecutive failures take it down and open its circuit breaker. An open
// breaker refuses probes (AllowProbe) for a jittered, doubling, capped
// backoff, then turns half-open and grants a probe; its success closes the
// breaker, its failure opens it again. An analyzer entering service ramps
// its effective weight linearly from Weight/SlowStartSteps to Weight over
// SlowStart, one snapshot per step. Time comes from Config.Now and is read
// only by Report, AllowProbe, View, Tick and Run, so tests drive it with a
// fake clock and no sleeps.
//
// When nothing is selectable — an empty set, every analyzer down or
// drained, every weight zero — Pick returns ok == false; nothing divides by
// zero and nothing is nil.
//
// # Counters
//
// Account adds to counters owned by the cursor (no cache line shared
// between event loops); View sums them per analyzer and reports each
// analyzer's actual share of packets against its configured share, and
// View.Since gives the same over an interval.
package balancer
