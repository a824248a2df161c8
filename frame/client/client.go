// Package client is the agent side of the logdist protocol: it batches log
// messages into packets, compresses them, and ships them over TCP to one of
// a list of logdist (or analyzer) addresses, failing over between them.
//
// # Delivery guarantee
//
// At-least-once for every message Send accepted, as long as the Client is
// not closed before Flush returns: a packet is kept until the server
// resolves it. ACK resolves it as delivered; ERROR with a per-packet code
// rejects it for good (it is not resent; Flush reports it, as do Stats and
// Config.OnResult); BUSY hands it back, and it is resent after the
// server's retry-after. Packets unresolved when a connection is lost, a
// fatal ERROR arrives, or a draining server (GOAWAY) closes, are resent on
// the next connection: the server may then see a packet twice, and can
// tell by its (agent id, packet id) — packet ids start at the time of New
// in nanoseconds and increase, so they are not reused across restarts.
// Ordering is not guaranteed.
//
// A server that refuses the token (or the HELLO itself) is a configuration
// error, not an outage: the client stops reconnecting, and Send, Flush and
// Close return an error wrapping ErrAuth (or ErrHandshake).
//
// # Memory
//
// Config.MaxPending bounds the bytes held for messages that are accepted
// but unresolved. When it is reached Send blocks (Config.Block) or returns
// ErrFull.
package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logdist/logdist/frame"
	"github.com/logdist/logdist/frame/session"
)

// Client sends messages to logdist. It is safe for concurrent use by many
// goroutines. Create it with New, stop it with Close.
type Client struct {
	cfg      Config
	sessCfg  session.ClientConfig // every connection's HELLO
	agentID  []byte
	log      *slog.Logger
	nextID   atomic.Uint64
	encoders sync.Pool // *frame.Encoder

	// maxFrame is the largest DATA payload the current server accepts
	// (min of Limits.MaxFrame and the last WELCOME); compress whether it
	// granted zstd. Read without the lock when encoding.
	maxFrame atomic.Int64
	compress atomic.Bool
	// dict is the dictionary the current server listed that packets are
	// compressed with (nil: none). Read without the lock when encoding.
	dict atomic.Pointer[frame.Dict]

	ctx     context.Context // cancelled by Close: aborts dials
	cancel  context.CancelFunc
	closing chan struct{} // closed by Close
	events  chan connEvent
	linger  *time.Timer
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu          sync.Mutex
	closed      bool
	fatal       error     // permanent failure (ErrAuth, ErrHandshake)
	cur         *batch    // the batch Send appends to
	curStart    time.Time // when cur got its first message
	free        []*batch
	batchIdx    uint64      // index of the last sealed batch
	recs        []*flushRec // sealed batches not fully resolved, by idx
	queue       []*packet   // packets to send, from qh
	qh          int
	active      *conn // the connection new DATA goes to; nil while (re)connecting
	conns       map[*conn]struct{}
	notify      chan struct{} // closed on progress; created on demand by waiters
	pending     int           // bytes accepted by Send, unresolved
	pendMsgs    int           // messages accepted by Send, unresolved
	rejCount    int           // packets rejected since the last Flush returned
	rejMsgs     int
	rejFirst    error
	rejLogAt    time.Time
	rejUnlogged int
	stats       Stats
}

// Stats are counters since New. Packet counts are DATA frames.
type Stats struct {
	PacketsSent      uint64 // DATA frames written, resends included
	PacketsResent    uint64 // DATA frames written for a packet sent before (after BUSY or a lost connection)
	PacketsAcked     uint64 // packets acknowledged
	PacketsRejected  uint64 // packets rejected for good (by a server or locally)
	MessagesAcked    uint64 // messages in acknowledged packets
	MessagesRejected uint64 // messages in rejected packets
	Busy             uint64 // BUSY frames received
	Reconnects       uint64 // connections established after the first
	PendingMessages  int    // messages accepted by Send and not yet resolved
	PendingBytes     int    // their encoded size (bounded by Config.MaxPending)
	Addr             string // address of the current connection; "" while disconnected
	LastError        error  // the last connection error (dial, handshake, loss); nil if none
}

// New validates cfg and returns a Client that connects in the background:
// New does not fail when no server is up yet; Send buffers meanwhile.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Addrs = append([]string(nil), cfg.Addrs...)
	c := &Client{
		cfg:     cfg,
		agentID: []byte(cfg.AgentID),
		log:     cfg.Logger,
		closing: make(chan struct{}),
		events:  make(chan connEvent, 1),
		conns:   make(map[*conn]struct{}),
		cur:     new(batch),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "client", "agent_id", cfg.AgentID)
	c.sessCfg = session.ClientConfig{
		AgentID:  cfg.AgentID,
		Token:    cfg.Token,
		Software: "logdist-client/" + Version,
		Offer:    frame.CapSack | frame.CapTrace,
		Window:   uint32(min(cfg.Window, 1<<31)),
	}
	if cfg.Compress {
		c.sessCfg.Offer |= frame.CapZstd
		c.sessCfg.Dicts = cfg.Dicts.IDs()
	}
	c.encoders.New = func() any { return &frame.Encoder{Level: cfg.Level, FastDecode: cfg.FastDecode} }
	c.nextID.Store(uint64(time.Now().UnixNano()))
	c.maxFrame.Store(int64(cfg.Limits.MaxFrame))
	c.compress.Store(cfg.Compress)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.linger = time.NewTimer(time.Hour)
	c.linger.Stop()
	c.wg.Add(2)
	go c.run()
	go c.lingerLoop()
	return c, nil
}

// Send queues a copy of m for delivery; m's buffers may be reused as soon
// as Send returns. A zero Timestamp is set to the current time. It returns
// an error for a message the server would reject (a field above
// Config.Limits, or too large for one frame: ErrTooLarge), ErrFull when
// MaxPending bytes are pending and Config.Block is not set (with Block it
// waits for room until ctx is done and returns ctx.Err()), ErrClosed after
// Close, and the permanent handshake error (ErrAuth, ErrHandshake).
func (c *Client) Send(ctx context.Context, m frame.Message) error {
	if err := checkMessage(&m, &c.cfg.Limits); err != nil {
		return err
	}
	if m.Timestamp == 0 {
		m.Timestamp = time.Now().UnixNano()
	}
	size := msgSize(&m)
	if err := c.checkFits(&m, size); err != nil {
		return err
	}
	c.mu.Lock()
	for {
		if c.fatal != nil {
			err := c.fatal
			c.mu.Unlock()
			return err
		}
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		if c.pending == 0 || c.pending+size <= c.cfg.MaxPending {
			break
		}
		if !c.cfg.Block {
			c.mu.Unlock()
			return ErrFull
		}
		ch := c.waitLocked()
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
	}
	c.pending += size
	c.pendMsgs++
	var s1, s2 *batch
	var r1, r2 *flushRec
	b := c.cur
	if len(b.msgs) > 0 && b.size+size > c.cfg.BatchBytes {
		s1, r1 = c.sealLocked()
		b = c.cur
	}
	if len(b.msgs) == 0 {
		c.curStart = time.Now()
		if c.cfg.Linger > 0 {
			c.linger.Reset(c.cfg.Linger)
		}
	}
	b.add(&m, size)
	if len(b.msgs) >= c.cfg.BatchMessages || b.size >= c.cfg.BatchBytes || c.cfg.Linger == 0 {
		s2, r2 = c.sealLocked()
	}
	c.mu.Unlock()
	if s1 != nil {
		c.encode(s1, r1)
	}
	if s2 != nil {
		c.encode(s2, r2)
	}
	return nil
}

// checkFits returns ErrTooLarge if a packet of m alone cannot fit the max
// frame. Only a message larger than the frame limit uncompressed pays for
// a trial compression.
func (c *Client) checkFits(m *frame.Message, size int) error {
	raw := packetOverhead + len(c.agentID) + size
	if raw > int(c.cfg.Limits.MaxRaw) {
		return fmt.Errorf("%w: %d bytes encoded, the limit is %d (Limits.MaxRaw)", ErrTooLarge, raw, c.cfg.Limits.MaxRaw)
	}
	maxFrame := int(c.maxFrame.Load())
	if raw <= maxFrame {
		return nil
	}
	if c.compress.Load() {
		enc := c.encoders.Get().(*frame.Encoder)
		c.useDict(enc, c.dict.Load())
		p := frame.Packet{AgentID: c.agentID, Messages: []frame.Message{*m}}
		buf := enc.AppendData(nil, 1, &p, true)
		c.encoders.Put(enc)
		if len(buf)-frame.HeaderSize <= maxFrame {
			return nil
		}
		raw = len(buf) - frame.HeaderSize
	}
	return fmt.Errorf("%w: %d bytes encoded, the server accepts frames up to %d bytes", ErrTooLarge, raw, maxFrame)
}

// sealLocked closes the current batch and registers it for Flush. The
// caller encodes it after unlocking.
func (c *Client) sealLocked() (*batch, *flushRec) {
	b := c.cur
	if n := len(c.free); n > 0 {
		c.cur = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		c.cur = new(batch)
	}
	c.batchIdx++
	rec := &flushRec{idx: c.batchIdx, open: 1}
	c.recs = append(c.recs, rec)
	return b, rec
}

// encode turns a sealed batch into packets and queues them. It runs on the
// goroutine that sealed the batch, so compression is spread over the
// sending goroutines.
func (c *Client) encode(b *batch, rec *flushRec) {
	enc := c.encoders.Get().(*frame.Encoder)
	c.useDict(enc, c.dict.Load())
	pkts := c.encodeBatch(enc, b.msgs, rec, c.compress.Load(), int(c.maxFrame.Load()), nil)
	c.encoders.Put(enc)
	b.reset()

	var results []resolved
	c.mu.Lock()
	c.free = append(c.free, b)
	rec.open += len(pkts) - 1
	for _, p := range pkts {
		if p.frame == nil {
			err := &RejectError{PacketID: p.id, Messages: p.msgs, Code: frame.CodeFrameTooLarge,
				Reason: fmt.Sprintf("message does not fit in the server's max frame of %d bytes", c.maxFrame.Load())}
			results = append(results, c.resolveLocked(p, err))
			continue
		}
		c.queue = append(c.queue, p)
	}
	c.wakeActiveLocked()
	c.mu.Unlock()
	c.report(results)
}

// useDict makes enc compress with d (nil: none), at the level for it.
func (c *Client) useDict(enc *frame.Encoder, d *frame.Dict) {
	enc.Dict, enc.Level = d, c.cfg.Level
	if d != nil {
		enc.Level = c.cfg.DictLevel
	}
}

// lingerLoop seals a batch that has waited Linger for more messages.
func (c *Client) lingerLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.closing:
			return
		case <-c.linger.C:
		}
		c.mu.Lock()
		var b *batch
		var rec *flushRec
		if len(c.cur.msgs) > 0 {
			if wait := c.cfg.Linger - time.Since(c.curStart); wait > 0 {
				c.linger.Reset(wait)
			} else {
				b, rec = c.sealLocked()
			}
		}
		c.mu.Unlock()
		if b != nil {
			c.encode(b, rec)
		}
	}
}

// Flush sends the messages still batching and returns when every message
// accepted by Send before the call is resolved, and Config.OnResult has
// returned for each of their packets (a caller counting results there
// sees them all; Flush may also wait for the callbacks of later packets
// resolved by the same answer, never for others). It returns an error
// wrapping ErrRejected if packets were rejected for good since the
// previous Flush returned (the count and the first reason are in the
// message), ctx's error (with the number of unresolved messages and the
// last connection error) if ctx is done first, the permanent handshake
// error, or ErrClosed.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	if c.fatal != nil {
		err := c.fatal
		c.mu.Unlock()
		return err
	}
	var b *batch
	var rec *flushRec
	if len(c.cur.msgs) > 0 {
		b, rec = c.sealLocked()
	}
	target := c.batchIdx
	c.mu.Unlock()
	if b != nil {
		c.encode(b, rec)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.recs) > 0 && c.recs[0].idx <= target {
		if c.fatal != nil {
			return c.fatal
		}
		if c.closed {
			return ErrClosed
		}
		ch := c.waitLocked()
		c.mu.Unlock()
		select {
		case <-ch:
			c.mu.Lock()
		case <-ctx.Done():
			c.mu.Lock()
			if c.stats.LastError != nil {
				return fmt.Errorf("client: flush: %d messages not acknowledged: %w (last connection error: %v)", c.pendMsgs, ctx.Err(), c.stats.LastError)
			}
			return fmt.Errorf("client: flush: %d messages not acknowledged: %w", c.pendMsgs, ctx.Err())
		}
	}
	if c.rejCount == 0 {
		return nil
	}
	err := fmt.Errorf("%w: %d packets (%d messages) since the last flush; first: %v", ErrRejected, c.rejCount, c.rejMsgs, c.rejFirst)
	c.rejCount, c.rejMsgs, c.rejFirst = 0, 0, nil
	return err
}

// Close flushes for at most Config.CloseTimeout, then closes every
// connection and waits for the client's goroutines to exit. Messages still
// unresolved are dropped: Close then returns an error saying how many
// (wrapping ErrClosed), or the Flush error. Later calls return the same.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		var err error
		if c.cfg.CloseTimeout > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CloseTimeout)
			err = c.Flush(ctx)
			cancel()
		}
		c.mu.Lock()
		c.closed = true
		switch {
		case err != nil:
		case c.fatal != nil:
			err = c.fatal
		case c.pendMsgs > 0:
			err = fmt.Errorf("%w: %d messages dropped unacknowledged", ErrClosed, c.pendMsgs)
		}
		conns := make([]*conn, 0, len(c.conns))
		for cn := range c.conns {
			conns = append(conns, cn)
		}
		c.broadcastLocked()
		c.mu.Unlock()

		close(c.closing)
		c.cancel()
		c.linger.Stop()
		for _, cn := range conns {
			cn.close(nil)
		}
		c.wg.Wait()
		c.log.Info("client closed", "acked_packets", c.Stats().PacketsAcked)
		c.closeErr = err
	})
	return c.closeErr
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.PendingMessages = c.pendMsgs
	s.PendingBytes = c.pending
	return s
}

// resolved is a packet's Result, and the flush record it counts in until
// report has passed it to OnResult.
type resolved struct {
	Result
	rec *flushRec
}

// resolveLocked retires p (err nil: acked) and returns the Result to
// report once the lock is released. With OnResult set, p stays open in
// its flush record until report has called OnResult for it: Flush returns
// only then.
func (c *Client) resolveLocked(p *packet, err error) resolved {
	c.pending -= p.size
	c.pendMsgs -= p.msgs
	if err == nil {
		c.stats.PacketsAcked++
		c.stats.MessagesAcked += uint64(p.msgs)
	} else {
		c.stats.PacketsRejected++
		c.stats.MessagesRejected += uint64(p.msgs)
		if c.rejCount == 0 {
			c.rejFirst = err
		}
		c.rejCount++
		c.rejMsgs += p.msgs
		// A server rejecting everything must not flood the log: at most
		// one line a second, with the count of the ones not logged.
		if now := time.Now(); now.Sub(c.rejLogAt) >= time.Second {
			c.log.Warn("packet rejected", "err", err, "not_logged_since_last", c.rejUnlogged)
			c.rejLogAt, c.rejUnlogged = now, 0
		} else {
			c.rejUnlogged++
		}
	}
	if c.cfg.OnResult == nil {
		c.closeLocked(p.rec)
	}
	c.broadcastLocked()
	return resolved{Result{PacketID: p.id, Messages: p.msgs, Err: err}, p.rec}
}

// closeLocked counts one packet of rec done, and drops the flush records
// whose packets are all done.
func (c *Client) closeLocked(rec *flushRec) {
	rec.open--
	for len(c.recs) > 0 && c.recs[0].open == 0 {
		c.recs[0] = nil
		c.recs = c.recs[1:]
	}
}

// report passes results from resolveLocked to Config.OnResult, outside the
// lock, then closes them in their flush records, which wakes Flush.
func (c *Client) report(results []resolved) {
	if c.cfg.OnResult == nil || len(results) == 0 {
		return
	}
	for _, r := range results {
		c.cfg.OnResult(r.Result)
	}
	c.mu.Lock()
	for i := range results {
		c.closeLocked(results[i].rec)
		results[i].rec = nil
	}
	c.broadcastLocked()
	c.mu.Unlock()
}

// waitLocked returns a channel closed at the next progress (a packet
// resolved, the client failed or closed).
func (c *Client) waitLocked() <-chan struct{} {
	if c.notify == nil {
		c.notify = make(chan struct{})
	}
	return c.notify
}

func (c *Client) broadcastLocked() {
	if c.notify != nil {
		close(c.notify)
		c.notify = nil
	}
}

// Queue operations. The queue is FIFO; packets handed back (BUSY, lost
// connection) go to the front so they are resent first.

func (c *Client) qlen() int { return len(c.queue) - c.qh }

func (c *Client) qpop() *packet {
	p := c.queue[c.qh]
	c.queue[c.qh] = nil
	c.qh++
	if c.qh == len(c.queue) {
		c.queue, c.qh = c.queue[:0], 0
	} else if c.qh > 1024 && c.qh > len(c.queue)/2 {
		n := copy(c.queue, c.queue[c.qh:])
		clear(c.queue[n:])
		c.queue, c.qh = c.queue[:n], 0
	}
	return p
}

func (c *Client) qpushFront(ps ...*packet) {
	if len(ps) <= c.qh {
		c.qh -= len(ps)
		copy(c.queue[c.qh:], ps)
		return
	}
	q := make([]*packet, 0, len(ps)+c.qlen()+16)
	q = append(q, ps...)
	q = append(q, c.queue[c.qh:]...)
	c.queue, c.qh = q, 0
}

func (c *Client) wakeActiveLocked() {
	if c.active != nil {
		c.active.wakeUp()
	}
}
