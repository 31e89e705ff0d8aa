package reencrypt

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/fieldcrypt/fieldcrypt/internal/telemetry"
)

// runTelemetry holds a run's instruments (fieldcrypt.reencrypt.*) with
// their attribute sets, built once per Run. Labels are the mode, whether
// the run is a dry run and the outcome: never a table's rows or values.
type runTelemetry struct {
	tracer    trace.Tracer
	rows      metric.Int64Counter
	chunks    metric.Int64Counter
	chunkDur  metric.Float64Histogram
	takeovers metric.Int64Counter
	mode      attribute.KeyValue
	dry       attribute.KeyValue
	rowAttrs  map[string][]metric.AddOption
	takeover  []metric.AddOption
}

// Row outcomes: the label values of fieldcrypt.reencrypt.rows.
var rowOutcomes = []string{"changed", "current", "null", "plaintext", "conflict", "vanished", "failed", "indexed"}

// runInstruments are the instruments of one provider.
type runInstruments struct {
	rows      metric.Int64Counter
	chunks    metric.Int64Counter
	chunkDur  metric.Float64Histogram
	takeovers metric.Int64Counter
}

// globalRunInstruments are those of the global provider, created once (it
// keeps every instrument created before the application installs one).
var globalRunInstruments = sync.OnceValue(func() *runInstruments { return newRunInstruments(nil) })

func newRunInstruments(mp metric.MeterProvider) *runInstruments {
	m := telemetry.Settings{MeterProvider: mp}.Meter()
	return &runInstruments{
		rows: telemetry.Counter(m, telemetry.ReencryptRows,
			"Rows processed by re-encryption jobs, by mode, dry_run and outcome (changed, current, null, plaintext, conflict, vanished, failed, indexed: a missing blind index written); rate() gives rows/s.", "{row}"),
		chunks: telemetry.Counter(m, telemetry.ReencryptChunks,
			"Chunks finished by this process, by mode and outcome (done, lease_lost, failed).", "{chunk}"),
		chunkDur: telemetry.Seconds(m, telemetry.ReencryptChunkDur, "Time to process one chunk."),
		takeovers: telemetry.Counter(m, telemetry.ReencryptTakeover,
			"Chunks taken over from a worker whose lease expired (killed or cut off).", "{chunk}"),
	}
}

func newRunTelemetry(opts Options) *runTelemetry {
	in := globalRunInstruments()
	if opts.MeterProvider != nil {
		in = newRunInstruments(opts.MeterProvider)
	}
	t := &runTelemetry{
		tracer:    telemetry.Settings{TracerProvider: opts.TracerProvider}.Tracer(),
		rows:      in.rows,
		chunks:    in.chunks,
		chunkDur:  in.chunkDur,
		takeovers: in.takeovers,
		mode:      telemetry.KeyMode.String(opts.Mode.String()),
		dry:       attribute.Bool("dry_run", opts.DryRun),
		rowAttrs:  map[string][]metric.AddOption{},
	}
	for _, o := range rowOutcomes {
		t.rowAttrs[o] = telemetry.Add(t.mode, t.dry, telemetry.KeyOutcome.String(o))
	}
	t.takeover = telemetry.Add(t.mode)
	return t
}

// countRows counts the rows of a batch by outcome.
func (t *runTelemetry) countRows(ctx context.Context, d *counts) {
	for i, n := range []int64{d.changed, d.current, d.nulls, d.plain, d.conflicts, d.vanished, d.failed, d.indexed} {
		if n > 0 {
			t.rows.Add(ctx, n, t.rowAttrs[rowOutcomes[i]]...)
		}
	}
}

// chunk starts the span of a chunk and returns the function that ends it
// and counts the chunk with its outcome.
func (t *runTelemetry) chunk(ctx context.Context, no int, takeover bool) (context.Context, func(outcome string)) {
	if takeover {
		t.takeovers.Add(ctx, 1, t.takeover...)
	}
	ctx, span := t.tracer.Start(ctx, "fieldcrypt.reencrypt.chunk", trace.WithAttributes(t.mode, attribute.Int("chunk", no), attribute.Bool("takeover", takeover)))
	start := time.Now()
	return ctx, func(outcome string) {
		attrs := metric.WithAttributes(t.mode, telemetry.KeyOutcome.String(outcome))
		t.chunks.Add(ctx, 1, attrs)
		t.chunkDur.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(t.mode, telemetry.KeyOutcome.String(outcome)))
		if outcome == "failed" {
			span.SetStatus(codes.Error, outcome)
		}
		span.SetAttributes(telemetry.KeyOutcome.String(outcome))
		span.End()
	}
}
