package proxy

import (
	"sync"
	"testing"
	"time"
)

// fakeLoop runs what it is given on one goroutine of its own, as an event
// loop runs Execute'd tasks.
type fakeLoop struct {
	tasks chan func()
	done  chan struct{}
	// Owned by the loop's goroutine: the race detector catches any other
	// goroutine touching them.
	finished []int
}

func newFakeLoop() *fakeLoop {
	l := &fakeLoop{tasks: make(chan func(), 1024), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for fn := range l.tasks {
			fn()
		}
	}()
	return l
}

func (l *fakeLoop) exec(fn func()) error { l.tasks <- fn; return nil }

// on runs fn on the loop and waits for it.
func (l *fakeLoop) on(fn func()) {
	ran := make(chan struct{})
	l.tasks <- func() { fn(); close(ran) }
	<-ran
}

type testJob struct {
	id   int
	loop *fakeLoop
	gate chan struct{} // if set, Run waits for it
	mu   *sync.Mutex
	ran  *[]int
}

func (j *testJob) Run() {
	if j.gate != nil {
		<-j.gate
	}
	j.mu.Lock()
	*j.ran = append(*j.ran, j.id)
	j.mu.Unlock()
}

func (j *testJob) Done() { j.loop.finished = append(j.loop.finished, j.id) }

// A loop's worker runs blocking jobs off the loop, in the order given, and
// hands each back to the loop, where Done runs; its queue is bounded, and
// stopping it runs what was queued.
func TestWorkerRunsOffTheLoopInOrder(t *testing.T) {
	l := newFakeLoop()
	defer func() { close(l.tasks); <-l.done }()
	w := newWorker(l.exec)
	var mu sync.Mutex
	var ran []int
	gate := make(chan struct{})
	job := func(id int, g chan struct{}) *testJob {
		return &testJob{id: id, loop: l, gate: g, mu: &mu, ran: &ran}
	}
	// The first job blocks the worker (a slow disk): the loop goes on, and
	// the queue fills to its bound.
	if !w.Submit(job(0, gate)) {
		t.Fatal("first job refused")
	}
	waitForT(t, "the worker to take the first job", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.queue) == 0
	})
	for i := 1; i <= maxWorkerJobs; i++ {
		if !w.Submit(job(i, nil)) {
			t.Fatalf("job %d refused below the bound", i)
		}
	}
	if w.Submit(job(-1, nil)) {
		t.Fatal("a job past the bound was queued")
	}
	l.on(func() {
		if len(l.finished) != 0 {
			t.Error("a job finished while the worker was blocked")
		}
	})
	close(gate)
	waitForT(t, "every job handed back", func() bool {
		n := 0
		l.on(func() { n = len(l.finished) })
		return n == maxWorkerJobs+1
	})
	l.on(func() {
		for i, id := range l.finished {
			if id != i {
				t.Fatalf("job %d handed back in place %d", id, i)
			}
		}
	})
	mu.Lock()
	for i, id := range ran {
		if id != i {
			t.Fatalf("job %d ran in place %d", id, i)
		}
	}
	mu.Unlock()
	// Stop runs what is queued and hands it back on the caller.
	w.Submit(job(maxWorkerJobs+1, nil))
	l.on(w.stop)
	l.on(func() {
		if n := len(l.finished); n != maxWorkerJobs+2 {
			t.Fatalf("%d jobs finished after stop, want %d", n, maxWorkerJobs+2)
		}
	})
	if w.Submit(job(0, nil)) {
		t.Fatal("a stopped worker took a job")
	}
}

func waitForT(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
