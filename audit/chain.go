package audit

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// ErrLogInUse means another process (or another Chain) writes the log.
// A log has one writer: give each process a log of its own.
var ErrLogInUse = fielderr.New(fielderr.Refused, "audit: the log is being written by another process")

// ErrClosed is the Err of a Chain after Close.
var ErrClosed = fielderr.New(fielderr.Unknown, "audit: the log is closed")

// SyncPolicy says when the chained log asks the operating system to put
// its records on disk (fsync).
type SyncPolicy int

const (
	// SyncOnFlush: records are written and synced every FlushInterval, on
	// rotation and on Close. A crash loses at most the last interval's
	// records; no checkpoint ever vouches for a record not yet synced.
	SyncOnFlush SyncPolicy = iota
	// SyncEachRecord: each Record writes and syncs before it returns.
	// Nothing recorded is lost, at the cost of an fsync per event.
	SyncEachRecord
	// SyncNever writes every FlushInterval and leaves syncing to the
	// operating system (and to rotation and Close).
	SyncNever
)

// ChainOptions configure a chained log.
type ChainOptions struct {
	// Path is the file records are appended to (mode 0600). Full files are
	// renamed to Path.NNNNNNNNNNNNNNNNNNNN (the sequence number of their
	// first record, so names sort in log order) and a new file chains on.
	Path string
	// MasterKey wraps the log key (32 random bytes) when the log is
	// created, and unwraps it when a process continues the log.
	MasterKey kms.MasterKey
	// Checkpoints, if set, receives a checkpoint every CheckpointEvery
	// records or CheckpointInterval, whichever comes first, and on Close.
	// Keep it apart from the log files (a database table, another volume).
	Checkpoints        CheckpointStore
	CheckpointEvery    uint64        // default 1000
	CheckpointInterval time.Duration // default 1 minute
	// FlushInterval is how long records wait in memory (default 200ms).
	FlushInterval time.Duration
	Sync          SyncPolicy
	// MaxFileBytes rotates the file once it would grow beyond (default
	// 64 MiB).
	MaxFileBytes int64
	// OnError is told about failures that do not stop the log (a
	// checkpoint that could not be saved; the next one retries).
	OnError func(error)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

const (
	maxQueued = 16384 // events waiting before Record flushes itself
	kickAt    = 1024  // events waiting that wake the flusher before its tick
)

// Chain is a Sink writing a hash-chained, keyed log: every record carries
// an HMAC-SHA256 over itself and the previous record's MAC, under a key
// the KMS protects. Someone who can edit the files but cannot use the
// master key cannot change, remove, insert or reorder a record without
// Verify naming it; checkpoints catch the removal of the newest records.
//
// Record never blocks on the disk and does little on the caller's path:
// it stamps the event (time, actor, purpose from ctx) and queues it; a
// background flusher numbers, MACs, encodes and writes the queued events,
// in order, every FlushInterval (see SyncPolicy). A Chain that cannot
// write stops recording and reports it through Err (and SinkErr); callers
// that must not act unrecorded check it first.
type Chain struct {
	opts   ChainOptions
	logID  string
	keys   chainKeys
	wrap   []byte
	mkURI  string
	unlock func()

	mu    sync.Mutex
	queue []Event // recorded, not yet written
	spare []Event // the last flushed queue, reused
	err   error

	// The chain and the file: the flusher's (under flushMu).
	flushMu    sync.Mutex
	h          hash.Hash
	buf        []byte // MAC input scratch
	out        []byte // encoded records waiting for one write
	seq        uint64
	prev       []byte
	f          *os.File
	fileSeq    uint64 // header sequence number of f
	fileBytes  int64
	flushedSeq uint64
	flushedMAC []byte
	cpSeq      uint64
	cpAt       time.Time

	stop chan struct{}
	done chan struct{}
	kick chan struct{} // wakes the flusher before its tick
	once sync.Once
}

// OpenChain opens the chained log at opts.Path: it continues the log
// there (after verifying the newest file, and the checkpoint if any) or
// starts a new one. It fails with ErrLogInUse while another process
// writes the log and with ErrTampered when the newest file is not what
// the last writer left.
func OpenChain(ctx context.Context, opts ChainOptions) (*Chain, error) {
	if opts.Path == "" || opts.MasterKey == nil {
		return nil, errors.New("audit: a chained log needs a path and a master key")
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = 1000
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Minute
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 200 * time.Millisecond
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = 64 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	unlock, err := lockLog(opts.Path + ".lock")
	if err != nil {
		return nil, err
	}
	c := &Chain{opts: opts, mkURI: opts.MasterKey.URI(), unlock: unlock, stop: make(chan struct{}), done: make(chan struct{}), kick: make(chan struct{}, 1)}
	recovered, err := c.resume(ctx)
	if err != nil {
		unlock()
		return nil, err
	}
	c.h = newRecordHMAC(c.keys)
	go c.flusher()
	if recovered > 0 {
		c.Record(ctx, Event{Type: AuditRecovered, Outcome: Error, Job: c.logID,
			Error: "the log ended in an incomplete line (a crash while writing); it was dropped", Counts: map[string]int64{"bytes_dropped": recovered}})
	}
	return c, nil
}

// LogID returns the log's id (its header field log).
func (c *Chain) LogID() string { return c.logID }

// headerRecord builds and MACs a header (c.h must be set; under flushMu
// or before the flusher starts).
func (c *Chain) headerRecord(seq uint64, prev []byte) *record {
	r := &record{Msg: msgHeader, Chain: chainFormat, WrappedKey: c.wrap, Log: c.logID, Seq: seq, Prev: prev,
		at: c.opts.Now().UTC().Format(timeFormat)}
	r.Event.MasterKeyURI = c.mkURI
	r.MAC, c.buf = recordMAC(c.h, r, c.buf, nil)
	return r
}

// Record implements Sink: it queues e (after FillContext) for the
// flusher.
func (c *Chain) Record(ctx context.Context, e Event) {
	e = FillContext(ctx, e)
	if e.Counts != nil {
		e.Counts = maps.Clone(e.Counts) // the caller may reuse its map
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, e)
	n := len(c.queue)
	c.mu.Unlock()
	switch {
	case n >= maxQueued || c.opts.Sync == SyncEachRecord:
		_ = c.Flush()
	case n == kickAt:
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// Err returns the failure that stopped the log, nil while it records.
func (c *Chain) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Chain) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// Flush writes the records waiting in memory (and syncs them unless the
// policy is SyncNever).
func (c *Chain) Flush() error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	return c.flushLocked()
}

func (c *Chain) flushLocked() error {
	c.mu.Lock()
	queue := c.queue
	c.queue, c.spare = c.spare[:0], nil
	stopped := c.err
	c.mu.Unlock()
	defer func() {
		clear(queue)
		c.mu.Lock()
		c.spare = queue[:0]
		c.mu.Unlock()
	}()
	if c.f == nil {
		return stopped
	}
	for i := range queue {
		if c.fileBytes+int64(len(c.out)) >= c.opts.MaxFileBytes {
			if err := c.rotate(); err != nil {
				c.fail(err)
				return err
			}
		}
		c.out = c.encode(c.out, &queue[i])
	}
	if len(queue) == 0 {
		return stopped
	}
	if err := c.write(); err != nil {
		c.fail(err)
		return err
	}
	if c.opts.Sync != SyncNever {
		if err := c.f.Sync(); err != nil {
			err = fmt.Errorf("audit: sync %s: %w", c.opts.Path, err)
			c.fail(err)
			return err
		}
	}
	c.flushedSeq, c.flushedMAC = c.seq, append([]byte(nil), c.prev...)
	return stopped
}

// encode numbers, MACs and appends one event (under flushMu).
func (c *Chain) encode(dst []byte, e *Event) []byte {
	ev := clean(*e)
	r := record{Msg: msgEvent, Level: Level(ev).String(), Event: ev, Log: c.logID, at: ev.Time.UTC().Format(timeFormat),
		Seq: c.seq + 1, Prev: c.prev}
	r.MAC, c.buf = recordMAC(c.h, &r, c.buf, nil)
	c.seq, c.prev = r.Seq, r.MAC
	return r.appendJSON(dst)
}

// write appends the encoded records to the file.
func (c *Chain) write() error {
	if len(c.out) == 0 {
		return nil
	}
	if _, err := c.f.Write(c.out); err != nil {
		return fmt.Errorf("audit: write %s: %w", c.opts.Path, err)
	}
	c.fileBytes += int64(len(c.out))
	c.out = c.out[:0]
	return nil
}

// rotate writes what is encoded, closes the file under its rotated name
// and starts the next with a header chained to the last record.
func (c *Chain) rotate() error {
	if err := c.write(); err != nil {
		return err
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync %s: %w", c.opts.Path, err)
	}
	if err := c.f.Close(); err != nil {
		return err
	}
	c.f = nil
	if err := os.Rename(c.opts.Path, rotatedName(c.opts.Path, c.fileSeq)); err != nil {
		return fmt.Errorf("audit: rotate %s: %w", c.opts.Path, err)
	}
	hdr := c.headerRecord(c.seq+1, c.prev)
	data := hdr.appendJSON(nil)
	f, err := createLogFile(c.opts.Path, data)
	if err != nil {
		return err
	}
	c.f, c.fileSeq, c.fileBytes = f, hdr.Seq, int64(len(data))
	c.seq, c.prev = hdr.Seq, hdr.MAC
	return nil
}

// flusher writes pending records every FlushInterval and saves
// checkpoints when due.
func (c *Chain) flusher() {
	defer close(c.done)
	t := time.NewTicker(c.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if c.Flush() == nil {
				c.checkpoint(false)
			}
		case <-c.kick:
			_ = c.Flush()
		}
	}
}

// checkpoint saves a checkpoint of the last synced record when one is due
// (or, with force, whenever there is anything new).
func (c *Chain) checkpoint(force bool) error {
	if c.opts.Checkpoints == nil {
		return nil
	}
	c.flushMu.Lock()
	seq, mac := c.flushedSeq, c.flushedMAC
	due := seq > c.cpSeq && (force || seq-c.cpSeq >= c.opts.CheckpointEvery || c.opts.Now().Sub(c.cpAt) >= c.opts.CheckpointInterval)
	c.flushMu.Unlock()
	if !due || c.opts.Sync == SyncNever && !force {
		return nil
	}
	cp := Checkpoint{Log: c.logID, Seq: seq, MAC: mac, At: c.opts.Now().UTC().Truncate(time.Second)}
	cp.sign(c.keys)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.opts.Checkpoints.SaveCheckpoint(ctx, cp); err != nil {
		if c.opts.OnError != nil {
			c.opts.OnError(err)
		}
		return err
	}
	c.flushMu.Lock()
	if seq > c.cpSeq {
		c.cpSeq, c.cpAt = seq, cp.At
	}
	c.flushMu.Unlock()
	return nil
}

// Checkpoint writes and syncs every record and saves a checkpoint of the
// last one now (if there is anything new since the last checkpoint).
func (c *Chain) Checkpoint() error {
	if err := c.Flush(); err != nil {
		return err
	}
	if c.opts.Sync == SyncNever {
		c.flushMu.Lock()
		var err error
		if c.f != nil {
			err = c.f.Sync()
		}
		c.flushMu.Unlock()
		if err != nil {
			return err
		}
	}
	return c.checkpoint(true)
}

// Close writes and syncs every record, saves a last checkpoint, closes
// the file and lets another process continue the log. Records after
// Close are dropped (Err returns ErrClosed).
func (c *Chain) Close() error {
	var err error
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		c.flushMu.Lock()
		ferr := c.flushLocked()
		if ferr == nil && c.f != nil && c.opts.Sync == SyncNever {
			ferr = c.f.Sync()
		}
		c.flushMu.Unlock()
		var cerr error
		if ferr == nil {
			cerr = c.checkpoint(true)
		}
		c.fail(ErrClosed)
		c.flushMu.Lock()
		if c.f != nil {
			if e := c.f.Close(); ferr == nil {
				ferr = e
			}
			c.f = nil
		}
		c.flushMu.Unlock()
		c.unlock()
		err = errors.Join(ferr, cerr)
	})
	return err
}

// Seq returns the sequence number of the last record written (for tests
// and tools).
func (c *Chain) Seq() uint64 {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	return c.seq
}
