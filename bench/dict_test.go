package bench

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/server"
)

func testDict(t testing.TB) *frame.Dict {
	t.Helper()
	d, err := frame.LoadDict("../frame/testdata/golden/testdict.zdict")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// With --dict, the pool is compressed with the dictionary, and a target
// that does not hold it is refused before anything is sent.
func TestRunWithDict(t *testing.T) {
	d := testDict(t)
	s, addr := startSink(t, func(c *server.Config) { c.Dicts = frame.Dicts{d} }, nil)
	cfg := testConfig(addr)
	cfg.Compress, cfg.Dict = true, d
	cfg.Packets, cfg.MsgsPerPacket = 60, 1
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacketsAcked != 60 || s.packets.Load() != 60 || res.Errors != 0 {
		t.Fatalf("acked %d, server %d, errors %d", res.PacketsAcked, s.packets.Load(), res.Errors)
	}
	if !strings.Contains(res.Compress, "dictionary 1279524865") || res.CompressionRatio <= 1 {
		t.Fatalf("compress %q ratio %g", res.Compress, res.CompressionRatio)
	}

	_, plain := startSink(t, nil, nil)
	cfg.Target = plain
	if _, err := Run(context.Background(), cfg); !errors.Is(err, errPermanent) || !strings.Contains(err.Error(), "does not hold dictionary 1279524865") {
		t.Fatalf("against a server without the dictionary: %v", err)
	}
	cfg.Compress = false
	if err := cfg.Validate(); err == nil {
		t.Fatal("a dictionary without compression validated")
	}
}
