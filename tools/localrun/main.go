// Command localrun starts a complete local logdist system — four analyzerd
// at weights 0.4/0.3/0.2/0.1 and one logdist — sends a burst of packets
// through it, prints the per-analyzer distribution and the admin URL, and
// keeps everything running until Ctrl-C, then stops every process it
// started. `make run` builds the binaries and runs it.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/client"
	"github.com/logdist/logdist/internal/cli"
	"github.com/logdist/logdist/proxy/status"
)

func main() {
	bin := pflag.String("bin", "bin", "directory holding the logdist and analyzerd binaries")
	listen := pflag.String("listen", "127.0.0.1:7400", "logdist agent address")
	admin := pflag.String("admin", "127.0.0.1:7480", "logdist admin address")
	packets := pflag.Int("packets", 10000, "packets in the initial burst")
	msgs := pflag.Int("msgs-per-packet", 10, "messages per packet in the burst")
	pflag.Parse()
	if err := run(*bin, *listen, *admin, *packets, *msgs); err != nil {
		fmt.Fprintln(os.Stderr, "localrun:", err)
		os.Exit(1)
	}
}

type proc struct {
	name string
	cmd  *exec.Cmd
	addr map[string]string
}

// start runs a binary, echoes its stderr with a name prefix, and waits for
// its "ready" line.
func start(name, path string, args ...string) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout = os.Stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", path, err)
	}
	ready := make(chan map[string]string, 1)
	closed := make(chan struct{}) // stderr closed: the process exited
	go func() {
		defer close(closed)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			// "analyzerd ready k=v ...", or its JSON record.
			if f, ok := cli.ParseReady(sc.Text(), filepath.Base(path)); ok {
				ready <- f
				continue
			}
			fmt.Fprintf(os.Stderr, "[%s] %s\n", name, sc.Text())
		}
	}()
	select {
	case f := <-ready:
		return &proc{name: name, cmd: cmd, addr: f}, nil
	case <-closed:
		// It failed to start (a busy port, say): its reason is above.
		err := cmd.Wait()
		return nil, fmt.Errorf("%s exited before it was ready (%v); its error is above", name, err)
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not become ready in 15s", name)
	}
}

func run(bin, listen, admin string, packets, msgs int) error {
	weights := []float64{0.4, 0.3, 0.2, 0.1}
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- p.cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
				<-done
			}
			fmt.Fprintf(os.Stderr, "stopped %s\n", p.name)
		}
	}()
	// A token for the admin API's writes, so that logdist ctl can be tried.
	dir, err := os.MkdirTemp("", "logdist-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(hex.EncodeToString(tok[:])+"\n"), 0o600); err != nil {
		return err
	}
	args := []string{"--listen", listen, "--admin", admin, "--admin-token-file", tokenFile}
	var stats []string
	for i, w := range weights {
		name := fmt.Sprintf("a%d", i+1)
		p, err := start(name, filepath.Join(bin, "analyzerd"), "--name", name,
			"--listen", fmt.Sprintf("127.0.0.1:%d", 7501+i), "--admin", fmt.Sprintf("127.0.0.1:%d", 7511+i))
		if err != nil {
			return err
		}
		procs = append(procs, p)
		stats = append(stats, "http://"+p.addr["admin"]+"/stats")
		args = append(args, "--analyzer", fmt.Sprintf("name=%s,addr=%s,weight=%g", name, p.addr["listen"], w))
	}
	ld, err := start("logdist", filepath.Join(bin, "logdist"), args...)
	if err != nil {
		return err
	}
	procs = append(procs, ld)
	api := "http://" + ld.addr["admin"] + "/api/v1/analyzers"
	if err := waitHealthy(api, len(weights)); err != nil {
		return err
	}

	fmt.Printf("\nsending %d packets of %d messages to %s ...\n", packets, msgs, ld.addr["listen"])
	began := time.Now()
	if err := burst(ld.addr["listen"], packets, msgs); err != nil {
		return err
	}
	fmt.Printf("all %d packets acknowledged in %v\n\n", packets, time.Since(began).Round(time.Millisecond))
	if err := printTable(api, stats); err != nil {
		return err
	}
	fmt.Printf("\nstatus page: http://%s/\nadmin API:   %s\nmetrics:     http://%s/metrics\nagents:      %s (try: echo hello | %s --target %s)\n"+
		"control:     %s ctl --admin %s --token-file %s weight a1 0.1 --ramp 30s\n\nrunning; press Ctrl-C to stop every process.\n",
		ld.addr["admin"], api, ld.addr["admin"], ld.addr["listen"], filepath.Join(bin, "logsend"), ld.addr["listen"],
		filepath.Join(bin, "logdist"), ld.addr["admin"], tokenFile)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Fprintln(os.Stderr, "\nstopping...")
	return nil
}

func waitHealthy(api string, n int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var rows []struct{ Healthy bool }
		if getJSON(api, &rows) == nil {
			up := 0
			for _, r := range rows {
				if r.Healthy {
					up++
				}
			}
			if up == n {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("analyzers not all healthy after 10s (see %s)", api)
}

func burst(addr string, packets, msgs int) error {
	cfg := client.DefaultConfig()
	cfg.Addrs = []string{addr}
	cfg.AgentID = "localrun"
	cfg.BatchMessages = msgs
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host, _ := os.Hostname()
	for i := 0; i < packets*msgs; i++ {
		m := frame.Message{Timestamp: time.Now().UnixNano(), Severity: frame.SevInfo, Facility: 1,
			Hostname: []byte(host), App: []byte("localrun"),
			Body: []byte(fmt.Sprintf("request id=%08x path=/api/v1/items/%d status=200 duration_ms=%d", i*2654435761, i%977, i%250))}
		if err := c.Send(ctx, m); err != nil {
			return err
		}
	}
	return c.Flush(ctx)
}

func printTable(api string, stats []string) error {
	var rows []status.Analyzer
	if err := getJSON(api, &rows); err != nil {
		return err
	}
	var sum float64
	for _, r := range rows {
		sum += r.Weight
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "analyzer\taddr\tweight\tpicked\tshare\twant\treceived (analyzerd /stats)\t")
	for i, r := range rows {
		var st struct {
			Packets    uint64 `json:"packets"`
			Duplicates uint64 `json:"duplicates"`
		}
		_ = getJSON(stats[i], &st)
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%d\t%.4f\t%.4f\t%d\t\n", r.Name, r.Addr, r.Weight, r.Packets, r.Share, r.Weight/sum, st.Packets)
	}
	return tw.Flush()
}

func getJSON(url string, v any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
