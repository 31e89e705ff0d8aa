package backup

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry/telemetrytest"
)

// TestMetrics: plaintext bytes by direction, runs by direction, class and
// outcome, and the file key's KMS call; a tampered backup is a failed
// restore. No label carries the backup's name or its master key.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	m := telemetrytest.New(t)
	mk := randomMasterKey("local://backup-canary.key")
	pt := detBytes("metrics", 3*MinSegmentSize+7)
	var ct bytes.Buffer
	_, err := Encrypt(ctx, &ct, bytes.NewReader(pt), mk, EncryptOptions{Class: envelope.High, Name: "name-canary", SegmentSize: MinSegmentSize, MeterProvider: m})
	require.NoError(t, err)
	_, err = Decrypt(ctx, &bytes.Buffer{}, bytes.NewReader(ct.Bytes()), openerFor(mk), DecryptOptions{MeterProvider: m})
	require.NoError(t, err)
	_, err = Verify(ctx, bytes.NewReader(ct.Bytes()), openerFor(mk), DecryptOptions{MeterProvider: m})
	require.NoError(t, err)
	tampered := bytes.Clone(ct.Bytes())
	tampered[len(tampered)-1] ^= 1
	_, err = Decrypt(ctx, &bytes.Buffer{}, bytes.NewReader(tampered), openerFor(mk), DecryptOptions{MeterProvider: m})
	require.ErrorIs(t, err, ErrAuthentication)

	n := int64(len(pt))
	for _, tc := range []struct {
		metric string
		attrs  map[string]string
		want   int64
	}{
		{"fieldcrypt.backup.bytes", map[string]string{"direction": "write"}, n},
		{"fieldcrypt.backup.bytes", map[string]string{"direction": "verify"}, n},
		{"fieldcrypt.backup.runs", map[string]string{"direction": "write", "class": "high", "outcome": "ok"}, 1},
		{"fieldcrypt.backup.runs", map[string]string{"direction": "restore", "outcome": "ok"}, 1},
		{"fieldcrypt.backup.runs", map[string]string{"direction": "restore", "outcome": "error"}, 1},
		{"fieldcrypt.backup.runs", map[string]string{"direction": "verify", "outcome": "ok"}, 1},
		{"fieldcrypt.kms.calls", map[string]string{"backend": "local", "op": "wrap", "outcome": "ok"}, 1},
		{"fieldcrypt.kms.calls", map[string]string{"backend": "local", "op": "unwrap", "outcome": "ok"}, 3},
	} {
		assert.Equal(t, tc.want, m.Sum(t, tc.metric, tc.attrs), "%s %v", tc.metric, tc.attrs)
	}
	// the tampered restore wrote the authentic segments before the last
	restored := m.Sum(t, "fieldcrypt.backup.bytes", map[string]string{"direction": "restore"})
	assert.True(t, restored >= n && restored < 2*n, "restored %d bytes", restored)
	for _, p := range m.Collect(t) {
		for k, v := range p.Attrs {
			assert.NotContains(t, v, "canary", "%s label %s", p.Metric, k)
		}
	}
}
