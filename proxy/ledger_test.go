package proxy

import (
	"testing"
	"unsafe"

	"github.com/logdist/logdist/internal/arena"
)

// TestRecordsUseTheArena: an agent frame goes to the arena, a frame over
// arena.MaxFrame to the record's own buffer, and freeing the record gives
// the arena bytes back.
func TestRecordsUseTheArena(t *testing.T) {
	lp := &loop{m: newLoopMetrics(nil)}
	lp.led.maxBuf = maxRecordBuf
	lp.led.arena.MaxChunks = 2
	small := make([]byte, 1400)
	r := lp.newRecord(small, nil, 1, 1)
	if r.ch == nil || unsafe.SliceData(r.buf) == unsafe.SliceData(r.own) {
		t.Fatal("a small frame did not go to the arena")
	}
	lp.freeRecord(r)
	if r.buf != nil || r.ch != nil || lp.led.live != 0 {
		t.Fatalf("after free: record buf %v ch %v, %d live", r.buf != nil, r.ch, lp.led.live)
	}
	big := make([]byte, arena.MaxFrame+1)
	r = lp.newRecord(big, nil, 2, 1)
	if r.ch != nil || len(r.buf) != len(big) || unsafe.SliceData(r.buf) != unsafe.SliceData(r.own) {
		t.Fatal("a large frame did not get its own buffer")
	}
	lp.freeRecord(r)
}

// The fields settling a record reads share its first cache line, and the
// record's size keeps it 64-byte aligned in the allocator's 128-byte class.
func TestRecordLayout(t *testing.T) {
	var r record
	if n := unsafe.Sizeof(r); n != 128 {
		t.Fatalf("record is %d bytes, want 128 (one size class, 64-byte aligned)", n)
	}
	for name, end := range map[string]uintptr{
		"agent": unsafe.Offsetof(r.agent) + unsafe.Sizeof(r.agent),
		"aseq":  unsafe.Offsetof(r.aseq) + unsafe.Sizeof(r.aseq),
		"ch":    unsafe.Offsetof(r.ch) + unsafe.Sizeof(r.ch),
		"stamp": unsafe.Offsetof(r.stamp) + unsafe.Sizeof(r.stamp),
		"msgs":  unsafe.Offsetof(r.msgs) + unsafe.Sizeof(r.msgs),
		"own":   unsafe.Offsetof(r.own) + unsafe.Sizeof(r.own),
	} {
		if end > 64 {
			t.Errorf("record.%s ends at byte %d, past the first cache line", name, end)
		}
	}
	for i := 0; i < 100; i++ {
		recordSink = append(recordSink, &record{}) // on the heap, as newRecord's
	}
	for _, r := range recordSink {
		if p := uintptr(unsafe.Pointer(r)); p%64 != 0 {
			t.Fatalf("a record at %#x is not 64-byte aligned", p)
		}
	}
	recordSink = nil
}

var recordSink []*record
