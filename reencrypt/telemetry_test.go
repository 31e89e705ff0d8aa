package reencrypt

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/internal/telemetry/telemetrytest"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// TestMetrics: rows by mode and outcome, chunks with their duration, a
// span per chunk and one for the run; no label carries a value or a row.
func TestMetrics(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys, env := newKeys()
		col := testColumn("items", false)
		createTable(t, db, col.Table, false)
		const n = 250
		seed(t, db, env, col, n, func(id int64) string {
			switch id % 10 {
			case 0:
				return "null"
			case 5:
				return "pt"
			}
			return "ct"
		})
		keys.Rotate(scope)
		m := telemetrytest.New(t)
		spans := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
		sum, err := Run(ctx, db, env, col, Options{BatchSize: 50, ChunkSize: 100, MeterProvider: m, TracerProvider: tp})
		require.NoError(t, err)
		require.Equal(t, 3, sum.ChunksDone)

		for outcome, want := range map[string]int64{"changed": n - 50, "null": 25, "plaintext": 25, "failed": 0} {
			assert.Equal(t, want, m.Sum(t, "fieldcrypt.reencrypt.rows", map[string]string{"mode": "rewrap", "dry_run": "false", "outcome": outcome}), outcome)
		}
		assert.Equal(t, int64(3), m.Sum(t, "fieldcrypt.reencrypt.chunks", map[string]string{"mode": "rewrap", "outcome": "done"}))
		assert.Equal(t, int64(3), m.Sum(t, "fieldcrypt.reencrypt.chunk.duration", map[string]string{"mode": "rewrap"}))
		assert.Zero(t, m.Sum(t, "fieldcrypt.reencrypt.lease.takeovers", map[string]string{}))

		count := map[string]int{}
		for _, s := range spans.Ended() {
			count[s.Name()]++
		}
		assert.Equal(t, map[string]int{"fieldcrypt.reencrypt.run": 1, "fieldcrypt.reencrypt.chunk": 3}, count)

		for _, p := range m.Collect(t) {
			for k, v := range p.Attrs {
				assert.NotContains(t, v, "secret-value", "%s label %s", p.Metric, k)
				assert.NotContains(t, v, col.Table, "%s label %s", p.Metric, k)
				for id := range 10 {
					assert.NotEqual(t, fmt.Sprint(id+1), v, "%s label %s: a row id", p.Metric, k)
				}
			}
		}
	})
}
