package envelope_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	kwp "github.com/tink-crypto/tink-go/v2/kwp/subtle"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
)

// The benchmarks of this file give every ratio of docs/performance.md from
// one run: raw fixed-key AES-GCM, the per-value-key floor, ours, and Tink's
// KMS envelope AEAD with a local KEK.

func pt64() []byte { return make([]byte, 64) }

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
		b.ReportAllocs()
		b.SetBytes(64)
		for b.Loop() {
			rand.Read(nonce)
			out = g.Seal(out[:0], nonce, pt, nil)
		}
	})
	ct := g.Seal(nil, nonce, pt, nil)
	b.Run("Open/64B", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(64)
		for b.Loop() {
			if _, err := g.Open(out[:0], nonce, ct, nil); err != nil {
				b.Fatal(err)
			}
		}
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
		b.ReportAllocs()
		b.SetBytes(64)
		for b.Loop() {
			rand.Read(key)
			g := mustGCM(b, key)
			rand.Read(nonce)
			out = g.Seal(out[:0], nonce, pt, nil)
		}
	})
	rand.Read(key)
	ct := mustGCM(b, key).Seal(nil, nonce, pt, nil)
	b.Run("Open/64B", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(64)
		for b.Loop() {
			g := mustGCM(b, key)
			if _, err := g.Open(out[:0], nonce, ct, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var benchBinding = envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn", Row: "4f0c2a8e-2b9d-4c61-9a53-0b6f1d2e7c11"}

func BenchmarkSeal(b *testing.B) {
	e := envelope.New(envelopetest.New())
	for _, size := range []struct {
		name string
		n    int
	}{{"64B", 64}, {"1KiB", 1024}} {
		pt := make([]byte, size.n)
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size.n))
			for b.Loop() {
				if _, err := e.Seal(ctx, benchBinding, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	e := envelope.New(envelopetest.New())
	for _, size := range []struct {
		name string
		n    int
	}{{"64B", 64}, {"1KiB", 1024}} {
		ct, err := e.Seal(ctx, benchBinding, make([]byte, size.n))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size.n))
			for b.Loop() {
				if _, err := e.Open(ctx, benchBinding, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRewrap(b *testing.B) {
	keys := envelopetest.New()
	e := envelope.New(keys)
	ct, err := e.Seal(ctx, benchBinding, pt64())
	if err != nil {
		b.Fatal(err)
	}
	keys.Rotate(benchBinding.Scope())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Rewrap(ctx, benchBinding, ct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindIndex(b *testing.B) {
	e := envelope.New(envelopetest.New())
	v := []byte("123-45-6789")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.ComputeBlindIndex(ctx, benchBinding, envelope.BlindIndex{}, v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealDeterministic(b *testing.B) {
	e := envelope.New(envelopetest.New())
	pt := pt64()
	b.ReportAllocs()
	b.SetBytes(64)
	for b.Loop() {
		if _, err := e.SealDeterministic(ctx, benchBinding, pt); err != nil {
			b.Fatal(err)
		}
	}
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
	pt := pt64()
	aad := []byte("patients.ssn")
	b.Run("Encrypt/64B", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(64)
		for b.Loop() {
			if _, err := env.Encrypt(pt, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	ct, err := env.Encrypt(pt, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Decrypt/64B", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(64)
		for b.Loop() {
			if _, err := env.Decrypt(ct, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWrapConstruction measures the wrap step alone for the
// constructions docs/format.md weighs: AES-256-KWP (ours), AES-256-GCM with
// a random nonce under the KEK (cheaper, but stops at 2^32 wraps per KEK),
// and XChaCha20-Poly1305 (192-bit nonce, but 72 bytes per wrapped key).
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
	b.Run("KWP/Wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := kw.Wrap(dek); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("KWP/Unwrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := kw.Unwrap(wrapped); err != nil {
				b.Fatal(err)
			}
		}
	})
	g := mustGCM(b, kekBytes)
	nonce := make([]byte, 12)
	out := make([]byte, 0, 128)
	b.Run("GCM-random-nonce/Wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rand.Read(nonce)
			out = g.Seal(out[:0], nonce, dek, nil)
		}
	})
	gn := make([]byte, 12)
	rand.Read(gn)
	gw := g.Seal(nil, gn, dek, nil)
	b.Run("GCM-random-nonce/Unwrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := g.Open(out[:0], gn, gw, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	x, err := chacha20poly1305.NewX(kekBytes)
	if err != nil {
		b.Fatal(err)
	}
	xn := make([]byte, chacha20poly1305.NonceSizeX)
	xw := x.Seal(nil, xn, dek, nil)
	b.Run("XChaCha20Poly1305/Wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rand.Read(xn)
			out = x.Seal(out[:0], xn, dek, nil)
		}
	})
	xn2 := make([]byte, chacha20poly1305.NonceSizeX)
	b.Run("XChaCha20Poly1305/Unwrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := x.Open(out[:0], xn2, xw, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
