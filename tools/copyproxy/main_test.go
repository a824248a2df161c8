package main

import "testing"

// Smooth weighted round robin places connections exactly by weight over
// every sum-of-weights picks.
func TestPickIsExact(t *testing.T) {
	ups, err := parseUpstreams([]string{"127.0.0.1:1=4", "127.0.0.1:2=3", "127.0.0.1:3=2", "127.0.0.1:4"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for range 100 {
		got[pick(ups).addr]++
	}
	want := map[string]int{"127.0.0.1:1": 40, "127.0.0.1:2": 30, "127.0.0.1:3": 20, "127.0.0.1:4": 10}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("picks %v, want %v", got, want)
		}
	}
}

func TestBadUpstreams(t *testing.T) {
	for _, specs := range [][]string{nil, {"127.0.0.1:1=0"}, {"127.0.0.1:1=x"}, {"nohostport"}} {
		if _, err := parseUpstreams(specs); err == nil {
			t.Errorf("parseUpstreams(%q) took it", specs)
		}
	}
}
