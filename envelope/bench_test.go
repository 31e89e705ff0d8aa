package envelope_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	daead "github.com/tink-crypto/tink-go/v2/daead/subtle"
	"github.com/tink-crypto/tink-go/v2/keyset"
	kwp "github.com/tink-crypto/tink-go/v2/kwp/subtle"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	fastkwp "github.com/fieldcrypt/fieldcrypt/envelope/internal/kwp"
	"github.com/fieldcrypt/fieldcrypt/envelope/internal/siv"
)

// The benchmarks of this file give every ratio of docs/performance.md from
// one run: raw fixed-key AES-GCM, the per-value-key floor, raw fixed-key
// HMAC-SHA256 and AES-SIV, the wrap constructions alone, ours, and Tink's
// KMS envelope AEAD with a local KEK. scripts/bench-envelope runs them
// interleaved and prints the ratios. Every one runs its operation through
// measure, so baselines and what is compared with them pay the same loop.

func pt64() []byte { return make([]byte, 64) }

// measure runs op b.N times and reports allocations, throughput (for n > 0
// bytes per operation) and cpu-ns/op: the CPU time the whole process
// (garbage collector included) spent per operation. Unlike ns/op, cpu-ns/op
// does not count time spent waiting for a core that other processes hold,
// so on a shared machine its ratios are steadier.
func measure(b *testing.B, n int64, op func() error) {
	b.ReportAllocs()
	if n > 0 {
		b.SetBytes(n)
	}
	start := cpuTime()
	for b.Loop() {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	if start > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func mustGCM(b *testing.B, key []byte) cipher.AEAD {
	g, err := newGCM(key)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

func newGCM(key []byte) (cipher.AEAD, error) {
	c, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(c)
}

// BenchmarkRawAESGCM: one fixed key, random nonce. The floor of AES-GCM.
func BenchmarkRawAESGCM(b *testing.B) {
	key := make([]byte, 32)
	rand.Read(key)
	g := mustGCM(b, key)
	pt := pt64()
	nonce := make([]byte, 12)
	out := make([]byte, 0, 128)
	b.Run("Seal/64B", func(b *testing.B) {
		measure(b, 64, func() error {
			rand.Read(nonce)
			out = g.Seal(out[:0], nonce, pt, nil)
			return nil
		})
	})
	ct := g.Seal(nil, nonce, pt, nil)
	b.Run("Open/64B", func(b *testing.B) {
		measure(b, 64, func() error { _, err := g.Open(out[:0], nonce, ct, nil); return err })
	})
}

// BenchmarkFloor: what any per-value-key AES-256-GCM design pays: a fresh
// random key, NewCipher+NewGCM, Seal (or Open) of 64 B; no wrap, no header.
func BenchmarkFloor(b *testing.B) {
	pt := pt64()
	key := make([]byte, 32)
	nonce := make([]byte, 12)
	out := make([]byte, 0, 128)
	b.Run("Seal/64B", func(b *testing.B) {
		measure(b, 64, func() error {
			rand.Read(key)
			g, err := newGCM(key)
			rand.Read(nonce)
			out = g.Seal(out[:0], nonce, pt, nil)
			return err
		})
	})
	rand.Read(key)
	ct := mustGCM(b, key).Seal(nil, nonce, pt, nil)
	b.Run("Open/64B", func(b *testing.B) {
		measure(b, 64, func() error {
			g, err := newGCM(key)
			if err == nil {
				_, err = g.Open(out[:0], nonce, ct, nil)
			}
			return err
		})
	})
}

var benchBinding = envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn", Row: "4f0c2a8e-2b9d-4c61-9a53-0b6f1d2e7c11"}

// benchSuites are the randomized suites Seal can write: the sub-benchmarks
// without a suite name use envelope.DefaultSuite.
var benchSuites = []struct {
	name  string
	suite envelope.Suite
}{{"KWP", envelope.SuiteRandomizedDerivedWrap}, {"SIV", envelope.SuiteRandomizedSIVWrap}}

// sizesAndSuites runs run as sub-benchmarks 64B and 1KiB with the default
// suite, and <suite>/64B with each suite Seal can write.
func sizesAndSuites(b *testing.B, run func(b *testing.B, e *envelope.Envelope, n int)) {
	e := envelope.New(envelopetest.New())
	b.Run("64B", func(b *testing.B) { run(b, e, 64) })
	b.Run("1KiB", func(b *testing.B) { run(b, e, 1024) })
	for _, s := range benchSuites {
		e := envelope.New(envelopetest.New(), envelope.WithSealSuite(s.suite))
		b.Run(s.name+"/64B", func(b *testing.B) { run(b, e, 64) })
	}
}

func BenchmarkSeal(b *testing.B) {
	sizesAndSuites(b, func(b *testing.B, e *envelope.Envelope, n int) {
		pt := make([]byte, n)
		measure(b, int64(n), func() error { _, err := e.Seal(ctx, benchBinding, pt); return err })
	})
}

func BenchmarkOpen(b *testing.B) {
	sizesAndSuites(b, func(b *testing.B, e *envelope.Envelope, n int) {
		ct, err := e.Seal(ctx, benchBinding, make([]byte, n))
		if err != nil {
			b.Fatal(err)
		}
		measure(b, int64(n), func() error { _, err := e.Open(ctx, benchBinding, ct); return err })
	})
}

// BenchmarkRewrap rewraps a 64-byte value of each suite from KEK v1 to v2
// (one unwrap, one wrap, a new header); compare with
// BenchmarkWrapConstruction's Wrap + Unwrap of the same construction.
func BenchmarkRewrap(b *testing.B) {
	for _, s := range benchSuites {
		keys := envelopetest.New()
		e := envelope.New(keys, envelope.WithSealSuite(s.suite))
		ct, err := e.Seal(ctx, benchBinding, pt64())
		if err != nil {
			b.Fatal(err)
		}
		keys.Rotate(benchBinding.Scope())
		b.Run(s.name, func(b *testing.B) {
			measure(b, 0, func() error { _, err := e.Rewrap(ctx, benchBinding, ct); return err })
		})
	}
}

// BenchmarkRawHMAC: HMAC-SHA256 of 64 bytes under one fixed, pre-keyed
// key, truncated to 16 bytes as the default blind index is; the baseline of
// BenchmarkBlindIndex.
func BenchmarkRawHMAC(b *testing.B) {
	key := make([]byte, 32)
	rand.Read(key)
	h := hmac.New(sha256.New, key)
	v := make([]byte, 64)
	sum := make([]byte, 0, sha256.Size)
	b.Run("64B", func(b *testing.B) {
		measure(b, 64, func() error {
			h.Reset()
			h.Write(v)
			_ = h.Sum(sum[:0])[:envelope.DefaultBlindIndexSize]
			return nil
		})
	})
}

// BenchmarkBlindIndex: the default blind index (HMAC-SHA256, 16 bytes) of
// a 64-byte value, as BenchmarkRawHMAC/64B.
func BenchmarkBlindIndex(b *testing.B) {
	e := envelope.New(envelopetest.New())
	v := make([]byte, 64)
	measure(b, 64, func() error {
		_, err := e.ComputeBlindIndex(ctx, benchBinding, envelope.BlindIndex{}, v)
		return err
	})
}

// BenchmarkRawAESSIV: tink-go's daead/subtle AES-SIV under one fixed
// 64-byte key, 64 bytes with 47 bytes of associated data (the size of the
// envelope's for patients.ssn); the baseline of the deterministic
// benchmarks.
func BenchmarkRawAESSIV(b *testing.B) {
	key := make([]byte, daead.AESSIVKeySize)
	rand.Read(key)
	s, err := daead.NewAESSIV(key)
	if err != nil {
		b.Fatal(err)
	}
	benchSealOpen(b, "Seal", "Open", s.EncryptDeterministically, s.DecryptDeterministically, make([]byte, 47))
}

// benchSealOpen runs seal on 64 bytes as sub-benchmark sealName/64B, then
// open on the result as openName/64B.
func benchSealOpen(b *testing.B, sealName, openName string, seal, open func(in, ad []byte) ([]byte, error), ad []byte) {
	pt := pt64()
	b.Run(sealName+"/64B", func(b *testing.B) {
		measure(b, 64, func() error { _, err := seal(pt, ad); return err })
	})
	ct, err := seal(pt, ad)
	if err != nil {
		b.Fatal(err)
	}
	b.Run(openName+"/64B", func(b *testing.B) {
		measure(b, 64, func() error { _, err := open(ct, ad); return err })
	})
}

func BenchmarkSealDeterministic(b *testing.B) {
	e := envelope.New(envelopetest.New())
	pt := pt64()
	measure(b, 64, func() error { _, err := e.SealDeterministic(ctx, benchBinding, pt); return err })
}

func BenchmarkOpenDeterministic(b *testing.B) {
	e := envelope.New(envelopetest.New())
	bd := benchBinding
	bd.Row = ""
	ct, err := e.SealDeterministic(ctx, bd, pt64())
	if err != nil {
		b.Fatal(err)
	}
	measure(b, 64, func() error { _, err := e.Open(ctx, bd, ct); return err })
}

// BenchmarkTinkEnvelope: the peer a Go user would pick today, tink-go's
// KMS envelope AEAD with a local AES-256-GCM KEK.
func BenchmarkTinkEnvelope(b *testing.B) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		b.Fatal(err)
	}
	kek, err := aead.New(h)
	if err != nil {
		b.Fatal(err)
	}
	env := aead.NewKMSEnvelopeAEAD2(aead.AES256GCMKeyTemplate(), kek)
	benchSealOpen(b, "Encrypt", "Decrypt", env.Encrypt, env.Decrypt, []byte("patients.ssn"))
}

// BenchmarkWrapConstruction measures the wrap step alone for the
// constructions docs/format.md weighs: AES-256-KWP (tink-go's, the
// reference, and the envelope's own, byte-for-byte the same), AES-SIV
// (suite 0x04), AES-256-GCM with a random nonce under the KEK (cheaper,
// but stops at 2^32 wraps per KEK), and XChaCha20-Poly1305 (192-bit nonce,
// but 72 bytes per wrapped key).
func BenchmarkWrapConstruction(b *testing.B) {
	kekBytes := make([]byte, 32)
	rand.Read(kekBytes)
	dek := make([]byte, 32)
	rand.Read(dek)
	kw, err := kwp.NewKWP(kekBytes)
	if err != nil {
		b.Fatal(err)
	}
	wrapped, _ := kw.Wrap(dek)
	// tink-go's KWP: the baseline of the Rewrap target.
	b.Run("KWP/Wrap", func(b *testing.B) {
		measure(b, 0, func() error { _, err := kw.Wrap(dek); return err })
	})
	b.Run("KWP/Unwrap", func(b *testing.B) {
		measure(b, 0, func() error { _, err := kw.Unwrap(wrapped); return err })
	})
	// The envelope's KWP and AES-SIV wrap, with heap scratch memory as the
	// envelope gives them.
	fk, err := fastkwp.New(kekBytes)
	if err != nil {
		b.Fatal(err)
	}
	out, scratch := make([]byte, 48), make([]byte, siv.ScratchSize)
	var dekBack [32]byte
	b.Run("KWP-fieldcrypt/Wrap", func(b *testing.B) {
		measure(b, 0, func() error { return fk.Wrap(out, dek, scratch) })
	})
	b.Run("KWP-fieldcrypt/Unwrap", func(b *testing.B) {
		measure(b, 0, func() error { _, err := fk.Unwrap(dekBack[:], wrapped, scratch); return err })
	})
	sivKey := make([]byte, 64)
	rand.Read(sivKey)
	sw, err := siv.New(sivKey)
	if err != nil {
		b.Fatal(err)
	}
	sw.Seal(out, dek, nil, scratch)
	sivWrapped := bytes.Clone(out)
	b.Run("SIV/Wrap", func(b *testing.B) {
		measure(b, 0, func() error { sw.Seal(out, dek, nil, scratch); return nil })
	})
	b.Run("SIV/Unwrap", func(b *testing.B) {
		measure(b, 0, func() error { return sw.Open(dekBack[:], sivWrapped, nil, scratch) })
	})
	g := mustGCM(b, kekBytes)
	nonce := make([]byte, 12)
	buf := make([]byte, 0, 128)
	b.Run("GCM-random-nonce/Wrap", func(b *testing.B) {
		measure(b, 0, func() error {
			rand.Read(nonce)
			buf = g.Seal(buf[:0], nonce, dek, nil)
			return nil
		})
	})
	gn := make([]byte, 12)
	rand.Read(gn)
	gw := g.Seal(nil, gn, dek, nil)
	b.Run("GCM-random-nonce/Unwrap", func(b *testing.B) {
		measure(b, 0, func() error { _, err := g.Open(buf[:0], gn, gw, nil); return err })
	})
	x, err := chacha20poly1305.NewX(kekBytes)
	if err != nil {
		b.Fatal(err)
	}
	xn := make([]byte, chacha20poly1305.NonceSizeX)
	xw := x.Seal(nil, xn, dek, nil)
	b.Run("XChaCha20Poly1305/Wrap", func(b *testing.B) {
		measure(b, 0, func() error {
			rand.Read(xn)
			buf = x.Seal(buf[:0], xn, dek, nil)
			return nil
		})
	})
	xn2 := make([]byte, chacha20poly1305.NonceSizeX)
	b.Run("XChaCha20Poly1305/Unwrap", func(b *testing.B) {
		measure(b, 0, func() error { _, err := x.Open(buf[:0], xn2, xw, nil); return err })
	})
}
