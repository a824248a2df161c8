package client_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/frame/client/clienttest"
)

// testDicts loads the protocol's test dictionary (id 0x4c440001) and a
// copy of it under another id.
func testDicts(t *testing.T) (*frame.Dict, *frame.Dict) {
	t.Helper()
	d, err := frame.LoadDict("../testdata/golden/testdict.zdict")
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(d.Bytes())
	binary.LittleEndian.PutUint32(b[4:8], 0x8001)
	other, err := frame.ParseDict(b)
	if err != nil {
		t.Fatal(err)
	}
	return d, other
}

// A client holding a dictionary compresses with it against a server that
// lists it, and without one against a server that lists none, or only
// another.
func TestDictUsedWhenGranted(t *testing.T) {
	d, other := testDicts(t)
	for _, c := range []struct {
		name   string
		server frame.Dicts
		want   uint32
	}{
		{"server holds it", frame.Dicts{other, d}, d.ID()},
		{"server holds none", nil, 0},
		{"server holds another", frame.Dicts{other}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{Dicts: c.server})
			cfg := testConfig(srv.Addr())
			cfg.Linger = 0 // a packet per message: the case dictionaries are for
			cfg.Dicts = frame.Dicts{d}
			cl := newClient(t, cfg)
			waitFor(t, "the connection", func() bool { return cl.Stats().Addr != "" })
			for i := range 20 {
				send(t, cl, fmt.Sprintf("2026-12-06T17:00:%02d.000Z level=INFO req_id=%d method=GET path=/api/v2/orders status=200 latency=3.2ms", i, 1000+i))
			}
			if err := flush(cl); err != nil {
				t.Fatal(err)
			}
			recv := srv.Received()
			if len(recv) != 20 {
				t.Fatalf("%d packets", len(recv))
			}
			for _, r := range recv {
				if r.Dict != c.want || (c.want != 0 && !r.Compressed) {
					t.Fatalf("packet %d: dictionary %d, compressed %v; want dictionary %d", r.PacketID, r.Dict, r.Compressed, c.want)
				}
			}
			noViolations(t, srv)
		})
	}
}

// Packets compressed with a dictionary for one server are compressed
// again for the next when it does not hold it: a resend never carries a
// dictionary its receiver lacks.
func TestDictResendAdapts(t *testing.T) {
	d, _ := testDicts(t)
	a := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{Dicts: frame.Dicts{d},
		OnData: func(clienttest.Data) clienttest.Reply { return clienttest.Reply{Action: clienttest.Hold} },
	})
	b := clienttest.Start(t, "127.0.0.1:0", clienttest.Options{})
	cfg := testConfig(a.Addr(), b.Addr())
	cfg.Linger = 0
	cfg.Dicts = frame.Dicts{d}
	c := newClient(t, cfg)
	waitFor(t, "the connection", func() bool { return c.Stats().Addr == a.Addr() })
	for i := range 10 {
		send(t, c, fmt.Sprintf("2026-12-06T17:00:%02d.000Z level=INFO req_id=%d method=GET path=/api/v2/orders status=200 latency=3.2ms", i, 1000+i))
	}
	done := make(chan error, 1)
	go func() { done <- flush(c) }()
	waitFor(t, "the packets at the first server", func() bool { return len(a.Received()) == 10 })
	for _, r := range a.Received() {
		if r.Dict != d.ID() {
			t.Fatalf("first server: packet with dictionary %d", r.Dict)
		}
	}
	a.Kill()
	if err := <-done; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	recv := b.Received()
	if len(recv) != 10 {
		t.Fatalf("second server got %d packets", len(recv))
	}
	for _, r := range recv {
		if r.Dict != 0 {
			t.Fatalf("second server got a packet compressed with dictionary %d, which it does not hold", r.Dict)
		}
	}
	if got := bodies(b); len(got) != 10 {
		t.Fatalf("second server got %d distinct messages", len(got))
	}
	noViolations(t, a, b)
}

// Two dictionaries with one id are refused; so is a nil one.
func TestDictConfig(t *testing.T) {
	d, _ := testDicts(t)
	for _, ds := range []frame.Dicts{{d, d}, {nil}} {
		cfg := testConfig("127.0.0.1:1")
		cfg.Dicts = ds
		if _, err := client.New(cfg); err == nil {
			t.Fatalf("%v accepted", ds)
		}
	}
	cfg := testConfig("127.0.0.1:1")
	cfg.Dicts, cfg.DictLevel = frame.Dicts{d}, 0
	if _, err := client.New(cfg); err == nil || !strings.Contains(err.Error(), "dictionary level") {
		t.Fatalf("dictionary level 0: %v", err)
	}
	if client.DefaultConfig().DictLevel != zstd.SpeedFastest {
		t.Fatal("the default dictionary level is not the fastest")
	}
}
