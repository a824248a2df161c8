// Command udpload sends a bounded number of RFC 3164 syslog datagrams to a
// logdist at a fixed rate and reports how many logdist received (from its
// /metrics), how many the kernel dropped, and how many messages reached
// the analyzers — the loopback loss test of docs/PERFORMANCE.md.
//
//	udpload --target 127.0.0.1:5514 --admin 127.0.0.1:7480 --count 1000000 --rate 100000
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

func main() {
	target := pflag.String("target", "127.0.0.1:5514", "logdist syslog UDP address")
	admin := pflag.String("admin", "127.0.0.1:7480", "logdist admin address (for /metrics)")
	count := pflag.Int("count", 200000, "datagrams to send (bounded)")
	rate := pflag.Int("rate", 100000, "datagrams per second")
	pflag.Parse()
	if *count <= 0 || *rate <= 0 {
		fmt.Fprintln(os.Stderr, "udpload: --count and --rate must be positive")
		os.Exit(2)
	}
	if err := run(*target, *admin, *count, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "udpload:", err)
		os.Exit(1)
	}
}

func run(target, admin string, count, rate int) error {
	before, err := scrape(admin)
	if err != nil {
		return err
	}
	conn, err := net.Dial("udp", target)
	if err != nil {
		return err
	}
	defer conn.Close()
	host, _ := os.Hostname()
	// Pre-build the datagrams: the sender must not be the bottleneck.
	pool := make([][]byte, 1024)
	for i := range pool {
		pool[i] = []byte(fmt.Sprintf("<13>Nov 26 21:00:00 %s loadgen[%d]: request id=%08x path=/api/v1/items/%d status=200 duration_ms=%d",
			host, 1000+i, i*2654435761, i%977, i%250))
	}
	start := time.Now()
	const tick = time.Millisecond
	perTick := float64(rate) * tick.Seconds()
	sent, due := 0, 0.0
	for sent < count {
		due += perTick
		for ; sent < count && float64(sent) < due; sent++ {
			if _, err := conn.Write(pool[sent&1023]); err != nil {
				return fmt.Errorf("after %d datagrams: %w", sent, err)
			}
		}
		if sleep := time.Until(start.Add(time.Duration(float64(sent) / float64(rate) * 1e9))); sleep > 0 {
			time.Sleep(sleep)
		}
	}
	elapsed := time.Since(start)
	// Wait until logdist's counters stop moving.
	var after map[string]float64
	last := -1.0
	for i := 0; i < 100; i++ {
		time.Sleep(100 * time.Millisecond)
		if after, err = scrape(admin); err != nil {
			return err
		}
		if f := after["logdist_syslog_forwarded_messages_total"]; f == last && after["logdist_syslog_datagrams_total"]-before["logdist_syslog_datagrams_total"] > 0 {
			break
		} else {
			last = f
		}
	}
	d := func(k string) float64 { return after[k] - before[k] }
	recv := d("logdist_syslog_datagrams_total")
	fmt.Printf("sent %d datagrams in %v (%.0f/s); logdist received %.0f (%.4f of sent); kernel drops %.0f; batched %.0f; forwarded to analyzers %.0f; dropped packets %.0f\n",
		count, elapsed.Round(time.Millisecond), float64(count)/elapsed.Seconds(), recv, recv/float64(count),
		d("logdist_syslog_kernel_drops_total"), d("logdist_syslog_batched_messages_total"), d("logdist_syslog_forwarded_messages_total"), d("logdist_dropped_total"))
	return nil
}

// scrape sums every series of each metric name in logdist's /metrics.
func scrape(admin string) (map[string]float64, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, sc.Err()
}
