package backup

import (
	"io"
	"testing"

	tinkstream "github.com/tink-crypto/tink-go/v2/streamingaead/subtle"
)

// BenchmarkTinkStreamingAEAD is the reference point: Tink's
// AES256_GCM_HKDF_1MB streaming AEAD (single goroutine) over the same
// input and source as BenchmarkEncrypt.
func BenchmarkTinkStreamingAEAD(b *testing.B) {
	a, err := tinkstream.NewAESGCMHKDF(detBytes("tink key", 32), "SHA256", 32, 1<<20, 0)
	if err != nil {
		b.Fatal(err)
	}
	measure(b, func() {
		w, err := a.NewEncryptingWriter(discard{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(w, newPatternReader(benchSize)); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	})
}

// discard is io.Discard without its ReaderFrom, so io.Copy goes through
// the writer under test.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
