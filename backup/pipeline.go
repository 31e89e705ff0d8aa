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

// slot is one segment buffer cycling reader -> worker -> writer -> reader.
type slot struct {
	buf  []byte // capacity segmentSize+tagSize
	n    int    // bytes of input in buf
	out  []byte // output of process, aliases buf
	idx  uint64
	last bool
	err  error
	done chan struct{} // capacity 1: the worker finished this slot
}

// pipeline runs fill (in the calling goroutine, in order), process (in
// parallel on workers goroutines) and emit (in one goroutine, in order).
// Memory is bounded by the number of slots.
type pipeline struct {
	workers int
	slots   int
	bufSize int
	// fill reads the next segment into s (s.idx is set). It reports
	// whether s is the last segment.
	fill func(s *slot) (last bool, err error)
	// process seals or opens s in place, setting s.out or s.err.
	process func(s *slot)
	// emit consumes s.out, in segment order.
	emit func(s *slot) error
}

// sizing returns the worker and slot counts for a segment size.
func sizing(workers, bufSize int) (int, int) {
	if workers < 1 {
		workers = 1
	}
	slots := 2*workers + 1
	if limit := maxBufferBytes / bufSize; slots > limit {
		slots = limit
	}
	if slots < 2 {
		slots = 2
	}
	if workers > slots {
		workers = slots
	}
	return workers, slots
}

func (p *pipeline) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	free := make(chan *slot, p.slots)
	for range p.slots {
		free <- &slot{done: make(chan struct{}, 1)}
	}
	jobs := make(chan *slot, p.slots)
	order := make(chan *slot, p.slots)

	var wg sync.WaitGroup
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				if err := ctx.Err(); err != nil {
					s.err = err // the writer has stopped; skip the work
				} else {
					p.process(s)
				}
				s.done <- struct{}{}
			}
		}()
	}

	writerDone := make(chan error, 1)
	go func() {
		var err error
		for s := range order {
			<-s.done
			if err == nil {
				if s.err != nil {
					err = s.err
				} else {
					err = p.emit(s)
				}
				if err != nil {
					cancel() // stop the reader and the workers
				}
			}
			s.out, s.err = nil, nil
			free <- s
		}
		writerDone <- err
	}()

	var readErr error
	for idx := uint64(0); ; idx++ {
		var s *slot
		select {
		case s = <-free:
		case <-ctx.Done():
			readErr = ctx.Err()
		}
		if readErr != nil {
			break
		}
		if s.buf == nil {
			s.buf = make([]byte, p.bufSize)
		}
		s.idx, s.n, s.err = idx, 0, nil
		last, err := p.fill(s)
		if err != nil {
			readErr = err
			break
		}
		s.last = last
		jobs <- s // never blocks: both channels hold every slot
		order <- s
		if last {
			break
		}
	}
	close(jobs)
	close(order)
	writeErr := <-writerDone
	wg.Wait()
	// Segments are emitted in order, and the writer drains every segment
	// read before the reader stopped, so a writer error concerns an earlier
	// segment than any reader error.
	if writeErr != nil {
		return writeErr
	}
	return readErr
}
