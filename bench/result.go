package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Result is what a run measured. Its JSON form is logbench's --json output.
type Result struct {
	Target  string  `json:"target"`
	Profile string  `json:"profile,omitempty"`
	Conns   int     `json:"conns"`
	Rate    float64 `json:"rate"` // asked for, packets/s; 0: as fast as the window allows
	Window  int     `json:"window"`
	// MsgsPerPacket and MsgSize describe the packets; PacketBytes is the
	// mean DATA frame size on the wire (header included) and
	// CompressionRatio the packets' raw size over their payload size.
	MsgsPerPacket    int     `json:"msgs_per_packet"`
	MsgSize          int     `json:"msg_size"`
	Compress         string  `json:"compress"`
	PacketBytes      float64 `json:"packet_bytes"`
	CompressionRatio float64 `json:"compression_ratio"`
	// UniqueIDs says that every packet sent carried a packet id of its
	// own (a resend keeps its packet's): the receiver sees no duplicate
	// unless it asked for a resend. PoolBodies is the number of packet
	// bodies built before the clock started (over all connections) and
	// sent in turn, each time with a new id.
	UniqueIDs  bool `json:"unique_ids"`
	PoolBodies int  `json:"pool_bodies"`

	// PacketsScheduled is what a rate or profile asked for (0 at rate 0);
	// fewer acked means the target fell behind the schedule.
	PacketsScheduled uint64 `json:"packets_scheduled,omitempty"`
	PacketsSent      uint64 `json:"packets_sent"` // DATA frames written, resends included
	PacketsAcked     uint64 `json:"packets_acked"`
	MessagesAcked    uint64 `json:"messages_acked"`
	BytesSent        uint64 `json:"bytes_sent"` // DATA frame bytes written, headers included
	// DurationS is from the start of sending to the last ACK.
	DurationS      float64 `json:"duration_s"`
	PacketsPerSec  float64 `json:"packets_per_sec"`  // acked
	MessagesPerSec float64 `json:"messages_per_sec"` // acked
	MBytesPerSec   float64 `json:"mbytes_per_sec"`   // sent, 10^6 bytes
	LatencyMs      Latency `json:"latency_ms"`

	Errors     uint64 `json:"errors"`     // rejected packets, connection failures, failed dials
	Busy       uint64 `json:"busy"`       // BUSY answers (each packet was resent)
	Reconnects uint64 `json:"reconnects"` // connections re-established after a failure or GOAWAY
	Unresolved uint64 `json:"unresolved"` // never resolved: the run ended first
	LastError  string `json:"last_error,omitempty"`

	IdleConns     int `json:"idle_conns,omitempty"`      // idle connections handshaken
	IdleConnsLost int `json:"idle_conns_lost,omitempty"` // of those, closed before the end

	Shares        []Share  `json:"shares,omitempty"`
	MaxShareError *float64 `json:"max_share_error,omitempty"`
}

// Latency is send → ACK latency in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Share is one analyzer's part of the packets logdist forwarded during a
// run, against its part of the weights.
type Share struct {
	Name        string  `json:"name"`
	Weight      float64 `json:"weight"`
	Packets     uint64  `json:"packets"`
	WeightShare float64 `json:"weight_share"`
	ActualShare float64 `json:"actual_share"`
}

// WriteTable writes the result for people.
func (r *Result) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rate := "as fast as the window allows"
	if r.Profile != "" {
		rate = "profile " + r.Profile
	} else if r.Rate > 0 {
		rate = fmt.Sprintf("%g packets/s", r.Rate)
	}
	fmt.Fprintf(tw, "target\t%s, %d conns, window %d, %s\n", r.Target, r.Conns, r.Window, rate)
	fmt.Fprintf(tw, "packets\t%d messages of %d bytes, %s, %.0f bytes/frame, compression %.2fx\n", r.MsgsPerPacket, r.MsgSize, r.Compress, r.PacketBytes, r.CompressionRatio)
	if r.PoolBodies > 0 {
		unique := "no"
		if r.UniqueIDs {
			unique = "yes"
		}
		fmt.Fprintf(tw, "packet ids\tunique packet ids: %s (%d pre-encoded bodies over %d conns, each sent again with a new id)\n", unique, r.PoolBodies, r.Conns)
	}
	fmt.Fprintf(tw, "duration\t%.2f s\n", r.DurationS)
	if r.PacketsScheduled > 0 {
		fmt.Fprintf(tw, "scheduled\t%d packets\n", r.PacketsScheduled)
	}
	fmt.Fprintf(tw, "sent\t%d packets, %d bytes\n", r.PacketsSent, r.BytesSent)
	fmt.Fprintf(tw, "acked\t%d packets, %d messages\n", r.PacketsAcked, r.MessagesAcked)
	fmt.Fprintf(tw, "throughput\t%.0f packets/s, %.0f messages/s, %.1f MB/s\n", r.PacketsPerSec, r.MessagesPerSec, r.MBytesPerSec)
	l := r.LatencyMs
	fmt.Fprintf(tw, "latency ms\tp50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	fmt.Fprintf(tw, "errors\t%d (busy %d, reconnects %d, unresolved %d)\n", r.Errors, r.Busy, r.Reconnects, r.Unresolved)
	if r.LastError != "" {
		fmt.Fprintf(tw, "last error\t%s\n", r.LastError)
	}
	if r.IdleConns > 0 {
		fmt.Fprintf(tw, "idle conns\t%d held (%d lost)\n", r.IdleConns, r.IdleConnsLost)
	}
	tw.Flush()
	if len(r.Shares) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "analyzer\tweight\tpackets\twant\tgot\terror\t")
		for _, s := range r.Shares {
			fmt.Fprintf(tw, "%s\t%g\t%d\t%.4f\t%.4f\t%+.4f\t\n", s.Name, s.Weight, s.Packets, s.WeightShare, s.ActualShare, s.ActualShare-s.WeightShare)
		}
		tw.Flush()
		if r.MaxShareError != nil {
			fmt.Fprintf(w, "max share error %.4f (%.2f%% points)\n", *r.MaxShareError, *r.MaxShareError*100)
		}
	}
}
