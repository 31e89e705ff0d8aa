package keyring_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	kmssdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry/telemetrytest"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// telemetryKeys returns a master key in moto (awskms) and a local one.
func telemetryKeys(t *testing.T) (awsKey, localKey kms.MasterKey) {
	t.Helper()
	c := kmssdk.New(kmssdk.Options{Region: "us-east-1", BaseEndpoint: aws.String(testsvc.Moto(t)),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	out, err := c.CreateKey(context.Background(), &kmssdk.CreateKeyInput{Description: aws.String("fieldcrypt " + t.Name())})
	require.NoError(t, err)
	ak, err := awskms.New(context.Background(), "aws-kms://"+aws.ToString(out.KeyMetadata.Arn), awskms.WithClient(c))
	require.NoError(t, err)
	lk, err := localkms.Create(filepath.Join(t.TempDir(), "moderate.key"))
	require.NoError(t, err)
	return ak, lk
}

// TestMetrics: KMS calls by backend, operation and outcome with their
// latency, KEK cache hits and misses, and spans around the KMS calls, with
// moto behind the awskms backend and a local key.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	ak, lk := telemetryKeys(t)
	cfg := keyring.Config{Name: "metrics", Classes: map[string]keyring.ClassConfig{
		"critical": {MasterKey: ak.URI(), TenantScoped: true},
		"moderate": {MasterKey: lk.URI()},
	}}
	store := keyring.NewFileStore(filepath.Join(t.TempDir(), "keks.json"))
	m := telemetrytest.New(t)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	open := func() *keyring.Keyring {
		kr, err := keyring.New(cfg, store, keyring.WithMasterKeys(ak, lk), keyring.WithMeterProvider(m), keyring.WithTracerProvider(tp))
		require.NoError(t, err)
		t.Cleanup(func() { _ = kr.Close() })
		return kr
	}
	kr := open()
	env := envelope.New(kr)
	critical := envelope.Binding{Class: envelope.Critical, Tenant: "tenant-canary", Table: "t", Column: "c", Row: "row-canary"}
	moderate := envelope.Binding{Class: envelope.Moderate, Table: "t", Column: "c"}
	var cts [][]byte
	for range 3 {
		for _, b := range []envelope.Binding{critical, moderate} {
			ct, err := env.Seal(ctx, b, []byte("value-canary"))
			require.NoError(t, err)
			cts = append(cts, ct)
		}
	}
	// A second process unwraps what the first wrapped.
	kr2 := open()
	env2 := envelope.New(kr2)
	for i, b := range []envelope.Binding{critical, moderate} {
		_, err := env2.Open(ctx, b, cts[i])
		require.NoError(t, err)
	}

	for _, tc := range []struct {
		backend, op string
	}{{"awskms", "wrap"}, {"awskms", "unwrap"}, {"local", "wrap"}, {"local", "unwrap"}} {
		t.Run(tc.backend+"/"+tc.op, func(t *testing.T) {
			attrs := map[string]string{"backend": tc.backend, "op": tc.op, "outcome": "ok"}
			calls := m.Sum(t, "fieldcrypt.kms.calls", attrs)
			assert.Positive(t, calls)
			assert.Equal(t, calls, m.Sum(t, "fieldcrypt.kms.duration", attrs), "one latency per call")
		})
	}
	assert.Equal(t, int64(kr.Stats().KMSCalls()+kr2.Stats().KMSCalls()), m.Sum(t, "fieldcrypt.kms.calls", map[string]string{}), "every KMS call is counted")
	assert.Positive(t, m.Sum(t, "fieldcrypt.kek.cache", map[string]string{"class": "critical", "result": "miss"}))
	assert.GreaterOrEqual(t, m.Sum(t, "fieldcrypt.kek.cache", map[string]string{"class": "critical", "result": "hit"}), int64(2))
	assert.GreaterOrEqual(t, m.Sum(t, "fieldcrypt.kek.cache", map[string]string{"class": "moderate", "result": "hit"}), int64(2))

	var names []string
	for _, s := range spans.Ended() {
		names = append(names, s.Name())
	}
	assert.Contains(t, names, "fieldcrypt.kms.wrap")
	assert.Contains(t, names, "fieldcrypt.kms.unwrap")
	assert.Contains(t, names, "fieldcrypt.kek.load")
	assert.False(t, slices.Contains(names, "fieldcrypt.seal"), "seals are not traced")

	for _, p := range m.Collect(t) {
		for k, v := range p.Attrs {
			assert.NotContains(t, v, "canary", "%s label %s", p.Metric, k)
			assert.NotContains(t, v, "arn:", "%s label %s: a backend, not a key", p.Metric, k)
		}
	}
}

// TestMetricsOutage: a KMS that does not answer is an unavailable call,
// opens the breaker (counted, and the calls it rejects), and its lookups
// are cache misses.
func TestMetricsOutage(t *testing.T) {
	ctx := context.Background()
	c := kmssdk.New(kmssdk.Options{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	ak, err := awskms.New(ctx, "aws-kms://arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555", awskms.WithClient(c))
	require.NoError(t, err)
	m := telemetrytest.New(t)
	kr, err := keyring.New(keyring.Config{Name: "outage", Classes: map[string]keyring.ClassConfig{"critical": {MasterKey: ak.URI()}}},
		keyring.NewFileStore(filepath.Join(t.TempDir(), "keks.json")), keyring.WithMasterKeys(ak), keyring.WithMeterProvider(m),
		keyring.WithCircuitBreaker(keyring.DefaultMaxProbe, keyring.DefaultMaxProbe))
	require.NoError(t, err)
	defer kr.Close()
	env := envelope.New(kr)
	b := envelope.Binding{Class: envelope.Critical, Table: "t", Column: "c"}
	for range 3 {
		_, err := env.Seal(ctx, b, []byte("v"))
		require.ErrorIs(t, err, envelope.ErrKeyUnavailable)
	}
	assert.Positive(t, m.Sum(t, "fieldcrypt.kms.calls", map[string]string{"backend": "awskms", "outcome": "unavailable"}))
	assert.Equal(t, int64(1), m.Sum(t, "fieldcrypt.kms.breaker.changes", map[string]string{"backend": "awskms", "state": "open"}))
	assert.Equal(t, int64(1), m.Sum(t, "fieldcrypt.kms.breaker.open", map[string]string{"backend": "awskms"}))
	assert.Positive(t, m.Sum(t, "fieldcrypt.kms.breaker.rejected", map[string]string{"backend": "awskms"}))
	assert.Zero(t, m.Sum(t, "fieldcrypt.seal", map[string]string{}), "the envelope reports to its own provider (here the global one), not the keyring's")
	require.NoError(t, kr.Close())
	assert.Zero(t, m.Sum(t, "fieldcrypt.kms.breaker.open", map[string]string{"backend": "awskms"}), "a closed keyring has no open breaker")
}
