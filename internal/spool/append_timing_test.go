package spool

import (
	"fmt"
	"testing"
)

// BenchmarkAppend measures Append of 1.4 KB records (a typical packet)
// in batches of several sizes, with the default sync policy (a
// background fsync every 100 ms) and, for comparison, SyncAlways.
// Records are acknowledged as they go, so delivered segments are removed
// and the disk does not fill. MB/s is the spool's write rate.
func BenchmarkAppend(b *testing.B) {
	for _, sync := range []SyncPolicy{SyncInterval(DefaultSyncInterval), SyncAlways} {
		for _, batch := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("sync=%s/batch=%d", sync, batch), func(b *testing.B) {
				cfg := DefaultConfig()
				cfg.Sync = sync
				cfg.AckInterval = DefaultSyncInterval
				d := open(b, b.TempDir(), cfg)
				recs := make([]Record, batch)
				for i := range recs {
					recs[i] = rec(i+1, 1400)
				}
				b.SetBytes(recordSize(len(recs[0].Body)) * int64(batch))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					last, err := d.Append(recs)
					if err != nil {
						b.Fatal(err)
					}
					for seq := last - uint64(batch) + 1; seq <= last; seq++ {
						d.Ack(seq)
					}
				}
				b.StopTimer()
				if err := d.Sync(); err != nil { // what is appended is on disk: count it
					b.Fatal(err)
				}
				st := d.Stats()
				b.ReportMetric(float64(st.Syncs)/float64(b.Elapsed().Seconds()), "fsyncs/s")
				if err := d.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
