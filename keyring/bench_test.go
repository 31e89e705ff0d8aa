package keyring

import (
	"testing"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// BenchmarkLookup measures what the keyring adds to each value: a 64-byte
// seal through a warm keyring against the same seal through a KeySource
// that hands out one fixed KEK (the baseline, same run), and the bare
// lookups the envelope makes (PrimaryKEK to seal, KEK to open).
//
//	go test ./keyring -run '^$' -bench Lookup -benchmem -count 8
func BenchmarkLookup(b *testing.B) {
	e := newEnv(b, nil)
	kr, _ := e.process(testConfig())
	scope := envelope.Scope{Class: envelope.Critical}
	kek, err := kr.PrimaryKEK(ctx, scope)
	if err != nil {
		b.Fatal(err)
	}
	bind := envelope.Binding{Class: envelope.Critical, Table: "users", Column: "ssn", Row: "1"}
	value := make([]byte, 64)
	seal := func(b *testing.B, env *envelope.Envelope) {
		b.SetBytes(int64(len(value)))
		for b.Loop() {
			if _, err := env.Seal(ctx, bind, value); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("Seal64B/fixed-KEK-baseline", func(b *testing.B) { seal(b, envelope.New(fixedKEK{kek})) })
	b.Run("Seal64B/keyring", func(b *testing.B) { seal(b, envelope.New(kr)) })
	b.Run("PrimaryKEK", func(b *testing.B) {
		for b.Loop() {
			if _, err := kr.PrimaryKEK(ctx, scope); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("KEK", func(b *testing.B) {
		ref := envelope.KEKRef{Class: envelope.Critical, Version: 1}
		for b.Loop() {
			if _, err := kr.KEK(ctx, ref); err != nil {
				b.Fatal(err)
			}
		}
	})
}
