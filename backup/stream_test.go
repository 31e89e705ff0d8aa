package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// compareWriter checks a stream against a reference reader as it is
// written, without buffering it.
type compareWriter struct {
	ref  io.Reader
	buf  []byte
	n    int64
	diff error
}

func (w *compareWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); {
		chunk := min(len(p)-off, len(w.buf))
		if _, err := io.ReadFull(w.ref, w.buf[:chunk]); err != nil {
			return off, err
		}
		if !bytes.Equal(w.buf[:chunk], p[off:off+chunk]) {
			w.diff = fmt.Errorf("output differs from input near byte %d", w.n)
			return off, w.diff
		}
		off += chunk
		w.n += int64(chunk)
	}
	return len(p), nil
}

// memPeak samples runtime.ReadMemStats until stopped.
type memPeak struct {
	heapInuse, sys atomic.Uint64
	stop           chan struct{}
	wg             sync.WaitGroup
}

func sampleMemory(every time.Duration) *memPeak {
	m := &memPeak{stop: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > m.heapInuse.Load() {
				m.heapInuse.Store(ms.HeapInuse)
			}
			if ms.Sys > m.sys.Load() {
				m.sys.Store(ms.Sys)
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memPeak) done() (heapInuse, sys uint64) {
	close(m.stop)
	m.wg.Wait()
	return m.heapInuse.Load(), m.sys.Load()
}

// TestStreamMultiGiBBoundedMemory pushes 2 GiB of deterministic data
// through Encrypt -> io.Pipe -> Decrypt and checks the output against the
// input on the fly, while sampling the heap: memory must stay under 64 MiB
// whatever the input size.
func TestStreamMultiGiBBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("2 GiB stream; skipped with -short")
	}
	const size = 2 << 30
	const limit = 64 << 20
	mk := randomMasterKey("local-test://stream")
	runtime.GC()
	peak := sampleMemory(20 * time.Millisecond)
	start := time.Now()

	pr, pw := io.Pipe()
	encErr := make(chan error, 1)
	go func() {
		_, err := Encrypt(context.Background(), pw, io.LimitReader(newDetReader("stream"), size), mk, EncryptOptions{Class: envelope.Critical})
		pw.CloseWithError(err)
		encErr <- err
	}()
	cw := &compareWriter{ref: io.LimitReader(newDetReader("stream"), size), buf: make([]byte, 64<<10)}
	res, err := Decrypt(context.Background(), cw, pr, openerFor(mk), DecryptOptions{})
	pr.CloseWithError(errors.New("decrypt done"))
	if eerr := <-encErr; eerr != nil {
		t.Fatalf("encrypt: %v", eerr)
	}
	heap, sys := peak.done()
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	if res.PlaintextBytes != size || cw.n != size {
		t.Fatalf("decrypted %d bytes (compared %d), want %d", res.PlaintextBytes, cw.n, size)
	}
	elapsed := time.Since(start)
	t.Logf("2 GiB encrypt|decrypt round trip in %v (%.0f MiB/s); peak HeapInuse %.1f MiB, peak Sys %.1f MiB",
		elapsed, float64(size)/(1<<20)/elapsed.Seconds(), float64(heap)/(1<<20), float64(sys)/(1<<20))
	if heap > limit {
		t.Errorf("peak HeapInuse %d bytes > %d", heap, limit)
	}
	if sys > limit {
		t.Errorf("peak Sys %d bytes > %d", sys, limit)
	}
}
