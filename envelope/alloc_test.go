//go:build !race

package envelope_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
)

// TestAllocations pins the allocations per value (issue 14 §2): a seal or
// open allocates its result and the data key's AES-GCM (2 allocations in
// the standard library, as the per-value-key floor does), a rewrap its
// result, a blind index or deterministic seal or open only its result. A
// count, not a time: it does not depend on the machine. (The race detector
// allocates on its own, hence the build tag.)
func TestAllocations(t *testing.T) {
	pt := make([]byte, 64)
	for _, s := range sealSuites {
		keys := envelopetest.New()
		e := envelope.New(keys, envelope.WithSealSuite(s))
		b := patientSSN("1")
		ct, err := e.Seal(ctx, b, pt)
		assert.NoError(t, err)
		keys.Rotate(b.Scope())
		assert.Equal(t, 3.0, testing.AllocsPerRun(50, func() { _, _ = e.Seal(ctx, b, pt) }), "seal, suite %s", s)
		assert.Equal(t, 3.0, testing.AllocsPerRun(50, func() { _, _ = e.Open(ctx, b, ct) }), "open, suite %s", s)
		assert.Equal(t, 1.0, testing.AllocsPerRun(50, func() { _, _ = e.Rewrap(ctx, b, ct) }), "rewrap, suite %s", s)
	}
	e := envelope.New(envelopetest.New())
	b := patientSSN("")
	det, err := e.SealDeterministic(ctx, b, pt)
	assert.NoError(t, err)
	assert.Equal(t, 1.0, testing.AllocsPerRun(50, func() { _, _ = e.ComputeBlindIndex(ctx, b, envelope.BlindIndex{}, pt) }), "blind index")
	assert.Equal(t, 1.0, testing.AllocsPerRun(50, func() { _, _ = e.SealDeterministic(ctx, b, pt) }), "deterministic seal")
	assert.Equal(t, 1.0, testing.AllocsPerRun(50, func() { _, _ = e.Open(ctx, b, det) }), "deterministic open")
}
