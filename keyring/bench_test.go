package keyring

import (
	"fmt"
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
	// What counting a cache hit adds to each lookup with the global no-op
	// provider (docs/performance.md, "Telemetry cost").
	b.Run("cache-count", func(b *testing.B) {
		for b.Loop() {
			kr.tel.cacheResult(ctx, scope, cacheHit)
		}
	})
}

// BenchmarkTenantCreation measures provisioning tenants, per tenant (one
// tenant-scoped class): creating each tenant's scope on first use
// (PrimaryKEK of a new tenant: the baseline, same run) against
// EnsureTenants creating them in bulk, on each store. Neither makes a KMS
// call per tenant (tenant KEKs are wrapped by the class key); the
// difference is one store transaction per tenant against a few hundred
// tenants per transaction.
//
//	CI=true go test ./keyring -run '^$' -bench TenantCreation -benchtime 2000x -count 3
func BenchmarkTenantCreation(b *testing.B) {
	cfg := testConfig()
	cfg.Classes = map[string]ClassConfig{"high": cfg.Classes["high"]}
	for _, sc := range storeCases() {
		if sc.name == "file" {
			continue // one file rewrite per scope: not a store for thousands of tenants
		}
		b.Run(sc.name, func(b *testing.B) {
			open := sc.open(b)
			e := newEnv(b, open())
			kr, keys := e.process(cfg)
			if _, err := kr.Init(ctx); err != nil {
				b.Fatal(err)
			}
			round := 0
			next := func(n int) []string { // fresh tenant names for each run
				round++
				out := tenantNames(n)
				for i := range out {
					out[i] = fmt.Sprintf("r%d-%s", round, out[i])
				}
				return out
			}
			b.Run("first-use-baseline", func(b *testing.B) {
				names := next(b.N)
				calls := sum(keys, wraps) + sum(keys, unwraps)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.High, Tenant: names[i]}); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(sum(keys, wraps)+sum(keys, unwraps)-calls)/float64(b.N), "KMS-calls/tenant")
			})
			b.Run("EnsureTenants", func(b *testing.B) {
				names := next(b.N)
				calls := sum(keys, wraps) + sum(keys, unwraps)
				b.ResetTimer()
				rep, err := kr.EnsureTenants(ctx, names)
				if err != nil || len(rep.Created) != b.N {
					b.Fatalf("%v: created %d of %d", err, len(rep.Created), b.N)
				}
				b.StopTimer()
				b.ReportMetric(float64(sum(keys, wraps)+sum(keys, unwraps)-calls)/float64(b.N), "KMS-calls/tenant")
			})
		})
	}
}
