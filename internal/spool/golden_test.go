package spool

import (
	"bytes"
	"crypto/rand"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logdist/logdist/frame"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the code")

// goldenSpool writes the golden spool into dir: a data record, a syslog
// record and a dead letter, the first acknowledged, at a fixed time;
// with keys, sealed, with nonces 1, 2, 3.
func goldenSpool(t testing.TB, dir string, keys *Keyring) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Sync = SyncNever
	cfg.Keys = keys
	if keys != nil {
		var n byte
		sealNonce = func(b []byte) {
			clear(b)
			n++
			b[len(b)-1] = n
		}
		defer func() { sealNonce = func(b []byte) { rand.Read(b) } }()
	}
	cfg.Now = func() time.Time { return time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) }
	d := open(t, dir, cfg)
	var enc frame.Encoder
	sys := enc.AppendData(nil, 1, &frame.Packet{ID: 9, AgentID: []byte("syslog/10.0.0.7"), Messages: []frame.Message{{
		Timestamp: 1764590400e9, Severity: frame.SevWarning, Facility: 4, Hostname: []byte("web1"), App: []byte("sshd"), Body: []byte("Failed password"),
	}}}, false)
	dl := AppendDeadLetter(nil, &DeadLetter{Reason: ReasonRejected, Code: frame.CodeRejected, Time: cfg.Now(), Origin: 1,
		Analyzer: []byte("a1"), Error: []byte("schema"), Frame: dataFrame(3, 120)})
	if _, err := d.Append([]Record{rec(1, 120), {Kind: KindSyslog, Body: sys}, {Kind: KindDeadLetter, Body: dl}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(1); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// goldenKey is the key of testdata/golden-sealed.
const goldenKey = "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// The format is pinned byte for byte: a change to it is a new Version.
func TestGolden(t *testing.T) {
	testGolden(t, "golden", nil)
}

// Sealed records too (FlagSealed): key id, nonce, ciphertext and tag.
// They open to the bodies of the unsealed golden.
func TestGoldenSealed(t *testing.T) {
	k, err := ParseKeyring([]byte(goldenKey))
	if err != nil {
		t.Fatal(err)
	}
	testGolden(t, "golden-sealed", k)
	ro := testConfig()
	ro.ReadOnly = true
	plain := open(t, filepath.Join("testdata", "golden"), ro)
	defer plain.Close()
	ro.Keys = k
	sealed := open(t, filepath.Join("testdata", "golden-sealed"), ro)
	defer sealed.Close()
	ps, ss := scan(t, plain), scan(t, sealed)
	for i := range ps {
		if !bytes.Equal(ps[i].Body, ss[i].Body) || ps[i].Kind != ss[i].Kind || ss[i].Offset != ps[i].Offset+int64(i*sealOverhead) {
			t.Fatalf("sealed golden record %d does not open to the golden one", i+1)
		}
	}
}

func testGolden(t *testing.T, golden string, keys *Keyring) {
	dir := t.TempDir()
	goldenSpool(t, dir, keys)
	for _, name := range []string{"00000000000000000001.seg", ackFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", golden, name)
		if *update {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -run TestGolden -update writes it)", err)
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("%s changed: the segment format is pinned (bump Version and keep reading version 1)", name)
		}
	}
	// The golden files read back as written.
	ro := testConfig()
	ro.ReadOnly = true
	ro.Keys = keys
	d := open(t, filepath.Join("testdata", golden), ro)
	defer d.Close()
	gs := scan(t, d)
	over := 0
	if keys != nil {
		over = sealOverhead
	}
	if len(gs) != 3 || !gs[0].Acked || gs[1].Acked || gs[1].Kind != KindSyslog || gs[2].Kind != KindDeadLetter ||
		gs[2].Offset != 32+2*RecordHeaderSize+int64(len(gs[0].Body)+len(gs[1].Body)+2*over) {
		t.Fatalf("golden spool reads back as %+v", gs)
	}
	if st := d.Stats(); st.Records != 2 || st.AckFloor != 1 || st.Last != 3 {
		t.Fatalf("stats %+v", st)
	}
}
