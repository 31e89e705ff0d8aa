package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
)

func TestSlogSinkSchema(t *testing.T) {
	var buf bytes.Buffer
	sink := audit.NewSlogSink(slog.New(slog.NewJSONHandler(&buf, nil)))
	sink.Record(context.Background(), audit.Event{
		Type: audit.KEKDestroyed, Actor: "ops@host", Class: "critical", Tenant: "acme", KEKVersion: 3,
		MasterKeyURI: "local:///keys/critical.key", Counts: map[string]int64{"values": 0},
	})
	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	assert.Equal(t, "fieldcrypt.audit", got["msg"])
	assert.Equal(t, "WARN", got["level"])
	assert.Equal(t, "kek.destroyed", got["event"])
	assert.Equal(t, "ok", got["outcome"])
	assert.Equal(t, "ops@host", got["actor"])
	assert.Equal(t, "critical", got["class"])
	assert.Equal(t, "acme", got["tenant"])
	assert.Equal(t, float64(3), got["kek_version"])
	assert.Equal(t, map[string]any{"values": float64(0)}, got["counts"])
	assert.NotContains(t, got, "row", "empty fields are omitted")
	assert.Contains(t, got, "at")
}

func TestSampled(t *testing.T) {
	m := &audit.Memory{}
	off := audit.Sampled(m, 0)
	for range 100 {
		off.Record(context.Background(), audit.Event{Type: audit.DecryptAccess})
	}
	off.Record(context.Background(), audit.Event{Type: audit.DecryptFailed})
	require.Len(t, m.Events(), 1, "access events dropped at rate 0, others kept")
	all := audit.Sampled(m, 1)
	for range 10 {
		all.Record(context.Background(), audit.Event{Type: audit.DecryptAccess})
	}
	require.Len(t, m.Events(), 11)
}

func TestMultiAndFill(t *testing.T) {
	a, b := &audit.Memory{}, &audit.Memory{}
	audit.Multi(a, b).Record(context.Background(), audit.Event{Type: audit.KEKRotated})
	require.Len(t, a.Events(), 1)
	require.Len(t, b.Events(), 1)
	e := a.Events()[0]
	assert.Equal(t, audit.OK, e.Outcome)
	assert.NotEmpty(t, e.Actor)
	assert.False(t, e.Time.IsZero())
}

func ExampleNewSlogSink() {
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == "time" || a.Key == "at" {
			return slog.Attr{}
		}
		return a
	}})
	sink := audit.NewSlogSink(slog.New(h))
	sink.Record(context.Background(), audit.Event{Type: audit.KEKRotated, Actor: "ops", Class: "high", KEKVersion: 2})
	fmt.Print(buf.String())
	// Output:
	// {"level":"INFO","msg":"fieldcrypt.audit","event":"kek.rotated","outcome":"ok","actor":"ops","class":"high","kek_version":2}
}
