package proxy

import (
	"sync"
)

// Blocking work — writing a batch of packets to a spool segment, syncing
// it — must never run on an event loop: one slow disk would stall every
// connection the loop serves. A loop hands such work to its worker, a
// goroutine of its own, as jobs; the worker runs them one after another,
// in the order given, and hands each finished job back to the loop, which
// runs its Done on its own goroutine (with everything a job's result may
// touch — records, agents — owned by the loop again). Results go back in
// batches: one Execute per run of the worker, however many jobs finished.
//
// Nothing on the packet path blocks yet, so no loop starts a worker; the
// disk spool is its first user, and starts one per loop on first use.

// Job is one piece of blocking work for a loop's worker.
type Job interface {
	// Run does the work on the worker's goroutine. It must not touch
	// anything the loop owns.
	Run()
	// Done runs on the loop's goroutine once Run has returned.
	Done()
}

// maxWorkerJobs bounds the jobs a loop may have queued; Submit refuses
// past it, and the caller applies backpressure (BUSY, stop reading).
const maxWorkerJobs = 1024

// worker runs one loop's jobs.
type worker struct {
	exec func(func()) error // runs a function on the loop (gnet's Execute)

	mu      sync.Mutex
	queue   []Job // submitted, not yet run
	done    []Job // run, not yet handed back
	handing bool  // a hand-back is queued on the loop
	closed  bool
	wake    chan struct{}
	stopped chan struct{}
}

func newWorker(exec func(func()) error) *worker {
	w := &worker{exec: exec, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go w.run()
	return w
}

// Submit queues j; false if the queue is full or the worker stopped.
func (w *worker) Submit(j Job) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || len(w.queue) >= maxWorkerJobs {
		return false
	}
	w.queue = append(w.queue, j)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

func (w *worker) run() {
	defer close(w.stopped)
	var batch []Job
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.closed {
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		if len(w.queue) == 0 && w.closed {
			w.mu.Unlock()
			return
		}
		batch = append(batch[:0], w.queue...)
		clear(w.queue)
		w.queue = w.queue[:0]
		w.mu.Unlock()
		for _, j := range batch {
			j.Run()
		}
		w.mu.Lock()
		w.done = append(w.done, batch...)
		hand := !w.handing && !w.closed
		w.handing = hand
		w.mu.Unlock()
		clear(batch)
		if hand {
			if err := w.exec(w.handBack); err != nil {
				// The loop is gone (shutdown): its jobs' results have no
				// one to go to; Stop runs them.
				w.mu.Lock()
				w.handing = false
				w.mu.Unlock()
			}
		}
	}
}

// handBack runs the finished jobs' Done, on the loop.
func (w *worker) handBack() {
	w.mu.Lock()
	done := w.done
	w.done = nil
	w.handing = false
	w.mu.Unlock()
	for _, j := range done {
		j.Done()
	}
}

// stop lets the queued jobs run, waits for the worker, and runs the Done
// of those not handed back yet on the caller's goroutine: the loop has
// stopped, so nothing else touches what they touch.
func (w *worker) stop() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.stopped
	w.handBack()
}
