package backup

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

const benchSize = 256 << 20

// cpuTime returns the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs op b.N times and also reports throughput per CPU-second
// ("MB/cpu-s"): on a shared machine wall-clock MB/s varies with other
// load, CPU efficiency much less.
func measure(b *testing.B, op func()) {
	b.SetBytes(benchSize)
	start := cpuTime()
	n := 0
	for b.Loop() {
		op()
		n++
	}
	if cpu := cpuTime() - start; cpu > 0 {
		b.ReportMetric(float64(n)*benchSize/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// patternReader yields n bytes copied from a fixed 1 MiB pattern: a source
// that costs one memcpy per byte, like reading a file from page cache.
type patternReader struct {
	pat []byte
	off int
	n   int64
}

func newPatternReader(n int64) *patternReader {
	return &patternReader{pat: detBytes("bench pattern", 1<<20), n: n}
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	total := 0
	for len(p) > 0 {
		c := copy(p, r.pat[r.off:])
		r.off = (r.off + c) % len(r.pat)
		p = p[c:]
		total += c
	}
	r.n -= int64(total)
	return total, nil
}

// BenchmarkRawAESGCM1MiB is the baseline: AES-256-GCM Seal of 1 MiB
// chunks with one fixed key into a reused buffer, on one goroutine, over
// benchSize bytes per op.
func BenchmarkRawAESGCM1MiB(b *testing.B) {
	key := detBytes("raw key", 32)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	pt := detBytes("raw pt", 1<<20)
	out := make([]byte, 0, len(pt)+16)
	nonce := make([]byte, 12)
	measure(b, func() {
		for i := range benchSize >> 20 {
			nonce[0] = byte(i)
			out = aead.Seal(out[:0], nonce, pt, nil)
		}
	})
}

func BenchmarkEncrypt(b *testing.B) {
	mk := randomMasterKey("local-test://bench")
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.ReportAllocs()
			measure(b, func() {
				_, err := Encrypt(context.Background(), io.Discard, newPatternReader(benchSize), mk, EncryptOptions{Class: envelope.Critical, Workers: workers})
				if err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	mk := randomMasterKey("local-test://bench")
	var ct bytes.Buffer
	ct.Grow(benchSize + benchSize/(1<<20)*tagSize + 4096)
	if _, err := Encrypt(context.Background(), &ct, newPatternReader(benchSize), mk, EncryptOptions{Class: envelope.Critical}); err != nil {
		b.Fatal(err)
	}
	opener := openerFor(mk)
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.ReportAllocs()
			measure(b, func() {
				_, err := Decrypt(context.Background(), io.Discard, bytes.NewReader(ct.Bytes()), opener, DecryptOptions{Workers: workers})
				if err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
