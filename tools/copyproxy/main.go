// Command copyproxy is the floor of `make bench-proxy`: a TCP proxy that
// parses nothing. Each client connection goes whole to one upstream,
// chosen by smooth weighted round robin, and bytes are moved both ways
// with io.Copy, which Go turns into splice(2) between two TCP sockets: no
// copy through user space. No proxy that reads its traffic can cost less
// per byte; what logdist and HAProxy cost above it is the price of what
// they do.
//
//	copyproxy --listen 127.0.0.1:0 --upstream 127.0.0.1:7501=4 --upstream 127.0.0.1:7502=3
//
// It prints "copyproxy ready listen=ADDR" on stderr once bound.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

type upstream struct {
	addr    string
	weight  int
	current int
}

func main() {
	fs := pflag.NewFlagSet("copyproxy", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "copyproxy: a connection-level TCP proxy that parses nothing (the floor of make bench-proxy)\n\nUsage: copyproxy --listen ADDR --upstream ADDR[=WEIGHT]...\n\nFlags:\n%s", fs.FlagUsages())
	}
	listen := fs.String("listen", "127.0.0.1:0", "TCP address to accept clients on")
	specs := fs.StringArray("upstream", nil, "upstream ADDR or ADDR=WEIGHT (repeatable; weight default 1)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "copyproxy: %v\n", err)
		os.Exit(2)
	}
	ups, err := parseUpstreams(*specs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "copyproxy: %v\n", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "copyproxy: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "copyproxy ready listen=%s\n", ln.Addr())
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = ln.Close()
	}()
	var wg sync.WaitGroup
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			fmt.Fprintf(os.Stderr, "copyproxy: accept: %v\n", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		u := pick(ups)
		wg.Add(1)
		go func() {
			defer wg.Done()
			relay(c, u.addr)
		}()
	}
	wg.Wait()
}

func parseUpstreams(specs []string) ([]*upstream, error) {
	if len(specs) == 0 {
		return nil, errors.New("at least one --upstream is needed")
	}
	var ups []*upstream
	for _, s := range specs {
		addr, w, ok := strings.Cut(s, "=")
		weight := 1
		if ok {
			n, err := strconv.Atoi(w)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("--upstream %q: the weight must be a positive integer", s)
			}
			weight = n
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--upstream %q: %v", s, err)
		}
		ups = append(ups, &upstream{addr: addr, weight: weight})
	}
	return ups, nil
}

// pick is nginx's smooth weighted round robin: exact over every
// sum-of-weights connections.
func pick(ups []*upstream) *upstream {
	total := 0
	var best *upstream
	for _, u := range ups {
		u.current += u.weight
		total += u.weight
		if best == nil || u.current > best.current {
			best = u
		}
	}
	best.current -= total
	return best
}

// relay joins c to a new connection to addr until either side ends.
func relay(c net.Conn, addr string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "copyproxy: %s: %v\n", addr, err)
		return
	}
	defer u.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(u, c)
		_ = u.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, u)
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
}
