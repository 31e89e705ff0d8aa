package envelope_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry/telemetrytest"
)

// TestMetrics counts seals and opens by class, kind and outcome: a
// tampered value is an auth_failed open, a forgotten key version an
// unknown_version one.
func TestMetrics(t *testing.T) {
	m := telemetrytest.New(t)
	keys := envelopetest.New()
	e := envelope.New(keys, envelope.WithMeterProvider(m))
	b := envelope.Binding{Class: envelope.High, Tenant: "acme-canary-tenant", Table: "patients", Column: "ssn", Row: "row-canary-42"}
	plaintext := []byte("plaintext-canary-123-45-6789")

	ct, err := e.Seal(ctx, b, plaintext)
	require.NoError(t, err)
	_, err = e.Open(ctx, b, ct)
	require.NoError(t, err)
	tampered := append([]byte(nil), ct...)
	tampered[len(tampered)-1] ^= 1
	_, err = e.Open(ctx, b, tampered)
	require.ErrorIs(t, err, envelope.ErrAuthentication)
	det, err := e.SealDeterministic(ctx, b, plaintext)
	require.NoError(t, err)
	_, err = e.Open(ctx, b, det)
	require.NoError(t, err)
	_, err = e.ComputeBlindIndex(ctx, b, envelope.BlindIndex{}, plaintext)
	require.NoError(t, err)
	_, err = e.Reencrypt(ctx, b, ct)
	require.NoError(t, err)
	keys.Forget(envelope.KEKRef{Class: envelope.High, Tenant: b.Tenant, Version: 1})
	_, err = e.Open(ctx, b, ct)
	require.ErrorIs(t, err, envelope.ErrUnknownKey)
	_, err = e.Seal(ctx, envelope.Binding{Class: envelope.High}, plaintext)
	require.ErrorIs(t, err, envelope.ErrInvalidInput)

	for _, tc := range []struct {
		metric, kind, outcome string
		want                  int64
	}{
		{"fieldcrypt.seal", "random", "ok", 2}, // Seal, and Reencrypt's seal
		{"fieldcrypt.seal", "deterministic", "ok", 1},
		{"fieldcrypt.seal", "blindindex", "ok", 1},
		{"fieldcrypt.seal", "random", "error", 1},
		{"fieldcrypt.open", "random", "ok", 2}, // Open, and Reencrypt's open
		{"fieldcrypt.open", "random", "auth_failed", 1},
		{"fieldcrypt.open", "random", "unknown_version", 1},
		{"fieldcrypt.open", "deterministic", "ok", 1},
	} {
		t.Run(tc.metric+"/"+tc.kind+"/"+tc.outcome, func(t *testing.T) {
			assert.Equal(t, tc.want, m.Sum(t, tc.metric, map[string]string{"class": "high", "kind": tc.kind, "outcome": tc.outcome}))
		})
	}
	// No label carries the value, the row key or (without WithTenantLabels)
	// the tenant.
	for _, p := range m.Collect(t) {
		_, hasTenant := p.Attrs["tenant"]
		assert.False(t, hasTenant, "%s has a tenant label", p.Metric)
		for k, v := range p.Attrs {
			for _, canary := range []string{"canary", string(plaintext), b.Row, b.Tenant, b.Table, b.Column} {
				assert.NotContains(t, v, canary, "%s label %s", p.Metric, k)
			}
		}
	}
}

// TestMetricsTenantLabels: with WithTenantLabels the tenant is a label,
// and still no value or row key is.
func TestMetricsTenantLabels(t *testing.T) {
	m := telemetrytest.New(t)
	e := envelope.New(envelopetest.New(), envelope.WithMeterProvider(m), envelope.WithTenantLabels())
	b := envelope.Binding{Class: envelope.Low, Tenant: "acme", Table: "t", Column: "c", Row: "row-canary"}
	ct, err := e.Seal(ctx, b, []byte("value-canary"))
	require.NoError(t, err)
	_, err = e.Open(ctx, b, ct)
	require.NoError(t, err)
	assert.Equal(t, int64(1), m.Sum(t, "fieldcrypt.seal", map[string]string{"class": "low", "tenant": "acme", "outcome": "ok"}))
	assert.Equal(t, int64(1), m.Sum(t, "fieldcrypt.open", map[string]string{"class": "low", "tenant": "acme", "outcome": "ok"}))
	for _, p := range m.Collect(t) {
		for _, v := range p.Attrs {
			assert.False(t, strings.Contains(v, "canary"), "%s: %v", p.Metric, p.Attrs)
		}
	}
}
