// Command framesink is the cheapest analyzer the protocol allows: it does
// the HELLO/WELCOME handshake, acknowledges every DATA without checking its
// checksum, decompressing or parsing it, and counts packets and bytes per
// listener. It is the far end of `make bench-proxy`, where everything but
// the proxy under test must cost as little as possible.
//
//	framesink --listen 127.0.0.1:0 --listen 127.0.0.1:0 --admin 127.0.0.1:0
//
// Each connection is one goroutine that reads up to --read-buffer bytes at
// a time, handles every complete frame in them and writes one ACK for the
// lot. GET /stats on --admin answers {"listeners":[{"addr","packets",
// "bytes","conns"}...]}. It prints "framesink ready listen=A,B,... admin=X"
// on stderr once every listener is bound.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
)

type listener struct {
	ln      net.Listener
	packets atomic.Uint64
	bytes   atomic.Uint64
	conns   atomic.Int64
}

func main() {
	fs := pflag.NewFlagSet("framesink", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "framesink: acknowledge every DATA unread (the cheap far end of make bench-proxy)\n\nUsage: framesink --listen ADDR [--listen ADDR...] [flags]\n\nFlags:\n%s", fs.FlagUsages())
	}
	listens := fs.StringArray("listen", nil, "TCP address to accept clients on (repeatable; port 0 picks one)")
	admin := fs.String("admin", "", "HTTP address for GET /stats (default \"\": off)")
	window := fs.Uint32("window", 4096, "DATA a client may keep unacknowledged (the granted window)")
	readBuf := fs.Int("read-buffer", 2<<20, "bytes read per system call at most on each connection; frames larger than it minus 32 are refused in WELCOME")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "framesink: %v\n", err)
		os.Exit(2)
	}
	if len(*listens) == 0 {
		fmt.Fprintln(os.Stderr, "framesink: at least one --listen is needed")
		os.Exit(2)
	}
	if *window == 0 || *readBuf < 64<<10 {
		fmt.Fprintln(os.Stderr, "framesink: --window must be positive and --read-buffer at least 65536")
		os.Exit(2)
	}
	cfg := &session.ServerConfig{
		Limits:   frame.DefaultLimits(),
		Window:   *window,
		Grant:    frame.CapZstd | frame.CapSack | frame.CapTrace,
		ServerID: "framesink",
	}
	if *readBuf < int(cfg.Limits.MaxFrame)+frame.HeaderSize {
		cfg.Limits.MaxFrame = uint32(*readBuf - frame.HeaderSize)
	}
	var ls []*listener
	var addrs []string
	for _, a := range *listens {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			fmt.Fprintf(os.Stderr, "framesink: %v\n", err)
			os.Exit(1)
		}
		l := &listener{ln: ln}
		ls = append(ls, l)
		addrs = append(addrs, ln.Addr().String())
	}
	adminAddr := ""
	if *admin != "" {
		aln, err := net.Listen("tcp", *admin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "framesink: --admin: %v\n", err)
			os.Exit(1)
		}
		adminAddr = aln.Addr().String()
		srv := &http.Server{Handler: statsHandler(ls), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(aln) }()
	}
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.accept(cfg, *readBuf)
		}()
	}
	fmt.Fprintf(os.Stderr, "framesink ready listen=%s admin=%s\n", strings.Join(addrs, ","), adminAddr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	for _, l := range ls {
		_ = l.ln.Close()
	}
	wg.Wait()
}

func statsHandler(ls []*listener) http.Handler {
	type row struct {
		Addr    string `json:"addr"`
		Packets uint64 `json:"packets"`
		Bytes   uint64 `json:"bytes"`
		Conns   int64  `json:"conns"`
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		out := struct {
			Listeners []row `json:"listeners"`
		}{}
		for _, l := range ls {
			out.Listeners = append(out.Listeners, row{l.ln.Addr().String(), l.packets.Load(), l.bytes.Load(), l.conns.Load()})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	return mux
}

func (l *listener) accept(cfg *session.ServerConfig, readBuf int) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			fmt.Fprintf(os.Stderr, "framesink: accept: %v\n", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		l.conns.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer l.conns.Add(-1)
			if err := l.serve(c, cfg, readBuf); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				fmt.Fprintf(os.Stderr, "framesink: %s: %v\n", c.RemoteAddr(), err)
			}
		}()
	}
}

// serve runs one connection: read as much as there is, handle every
// complete frame, write the answers once.
func (l *listener) serve(c net.Conn, cfg *session.ServerConfig, readBuf int) error {
	defer c.Close()
	s := session.NewServer(cfg, session.Peer{Addr: c.RemoteAddr()})
	buf := make([]byte, readBuf)
	start, end := 0, 0
	for {
		if start == end {
			start, end = 0, 0
		} else if len(buf)-end < frame.HeaderSize || start > len(buf)/2 {
			end = copy(buf, buf[start:end])
			start = 0
		}
		n, err := c.Read(buf[end:])
		if n == 0 && err != nil {
			return err
		}
		end += n
		var packets, bytes uint64
		for end-start >= frame.HeaderSize {
			h, err := s.Admit(buf[start:end])
			if err != nil {
				_, _ = c.Write(s.Flush(0))
				return err
			}
			fl := h.FrameLen()
			if fl > len(buf) {
				return fmt.Errorf("frame of %d bytes is beyond --read-buffer", fl)
			}
			if end-start < fl {
				if len(buf)-start < fl {
					end = copy(buf, buf[start:end])
					start = 0
				}
				break
			}
			ev, err := s.Handle(h, buf[start+frame.HeaderSize:start+fl])
			if err != nil {
				_, _ = c.Write(s.Flush(0))
				return err
			}
			if ev == session.EvData {
				s.Accept(h.Seq())
				packets++
				bytes += uint64(fl)
			}
			start += fl
		}
		if packets > 0 {
			l.packets.Add(packets)
			l.bytes.Add(bytes)
		}
		if out := s.Flush(0); len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return err
			}
		}
	}
}
