package backup

import (
	"context"
	"sync"
)

// maxBufferBytes bounds the segment buffers one Encrypt/Decrypt/Verify
// call holds at once. With the last-segment diagnosis copy (at most one
// segment) and the header, a call stays well under 64 MiB whatever the
// input size, segment size or worker count.
const maxBufferBytes = 40 << 20

// slot is one worker's segment buffer.
type slot struct {
	buf  []byte // capacity bufSize
	n    int    // bytes of input in buf
	out  []byte // output of process, aliases buf
	idx  uint64
	last bool
	err  error

	nonce [nonceSize]byte // scratch for process: no per-segment allocation
}

// pipeline runs segments through fill, process and emit on a fixed number
// of workers, each owning one segment buffer. A worker reads the next
// segment under the read lock (segments are read in order), processes it
// in parallel with the other workers (the data is still in its core's
// cache), then waits for its turn and emits it under the write lock
// (segments are emitted strictly in order). There is no hand-off between
// goroutines on the fast path: with one worker the whole pipeline runs on
// the calling goroutine. Memory is bounded by workers × bufSize.
type pipeline struct {
	workers int
	bufSize int
	// fill reads the next segment into s (s.idx is set). It reports
	// whether s is the last segment. Calls are serialized, in order.
	fill func(s *slot) (last bool, err error)
	// process seals or opens s in place, setting s.out or s.err. Calls run
	// in parallel.
	process func(s *slot)
	// emit consumes s.out. Calls are serialized, in segment order.
	emit func(s *slot) error
}

// sizing returns the number of workers for a requested count and buffer
// size: at least 1, and at most what maxBufferBytes allows (at least 2).
func sizing(workers, bufSize int) int {
	limit := max(maxBufferBytes/bufSize, 2)
	return min(max(workers, 1), limit)
}

func (p *pipeline) run(ctx context.Context) error {
	var (
		readMu   sync.Mutex
		next     uint64 // next segment to read
		readDone bool   // last segment read, or reading failed
		readErr  error

		writeMu   sync.Mutex
		turn      = sync.NewCond(&writeMu)
		nextWrite uint64 // next segment to emit
		writeErr  error
	)
	// read fills s with the next segment; false means stop.
	read := func(s *slot) bool {
		readMu.Lock()
		defer readMu.Unlock()
		if readDone {
			return false
		}
		if err := ctx.Err(); err != nil {
			readDone, readErr = true, err
			return false
		}
		writeMu.Lock()
		failed := writeErr != nil
		writeMu.Unlock()
		if failed {
			readDone = true
			return false
		}
		s.idx, s.n, s.out, s.err = next, 0, nil, nil
		last, err := p.fill(s)
		if err != nil {
			readDone, readErr = true, err
			return false
		}
		next++
		s.last = last
		readDone = last
		return true
	}
	worker := func() {
		s := &slot{buf: getBuf(p.bufSize)}
		defer putBuf(s.buf)
		for read(s) {
			if err := ctx.Err(); err != nil {
				s.err = err
			} else {
				p.process(s)
			}
			writeMu.Lock()
			for nextWrite != s.idx && writeErr == nil {
				turn.Wait() // an earlier segment is still being processed
			}
			if writeErr == nil {
				if s.err != nil {
					writeErr = s.err
				} else {
					writeErr = p.emit(s)
				}
				nextWrite++
			}
			turn.Broadcast()
			writeMu.Unlock()
		}
	}

	var wg sync.WaitGroup
	for range p.workers - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker()
		}()
	}
	worker()
	wg.Wait()
	// Segments are emitted in order, and every segment read before reading
	// stopped is emitted (or fails) first, so a write error concerns an
	// earlier segment than any read error.
	if writeErr != nil {
		return writeErr
	}
	return readErr
}

// Segment buffers are reused across calls (and cleared first: they held
// plaintext), so repeated backups do not fault in fresh memory each time.
var bufPools sync.Map // bufSize -> *sync.Pool of *[]byte

func getBuf(size int) []byte {
	if pool, ok := bufPools.Load(size); ok {
		if b, ok := pool.(*sync.Pool).Get().(*[]byte); ok {
			return *b
		}
	}
	return make([]byte, size)
}

func putBuf(b []byte) {
	clear(b)
	pool, _ := bufPools.LoadOrStore(len(b), new(sync.Pool))
	pool.(*sync.Pool).Put(&b)
}
