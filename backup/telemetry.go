package backup

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/fieldcrypt/fieldcrypt/internal/telemetry"
)

// Directions: the label values of fieldcrypt.backup.bytes and .runs.
const (
	dirWrite   = "write"   // Encrypt, EncryptFile
	dirRestore = "restore" // Decrypt, DecryptFile
	dirVerify  = "verify"  // Verify
)

// instruments are the backup metrics of one provider.
type instruments struct {
	bytes metric.Int64Counter
	runs  metric.Int64Counter
}

func newInstruments(mp metric.MeterProvider) *instruments {
	m := telemetry.Settings{MeterProvider: mp}.Meter()
	return &instruments{
		bytes: telemetry.Counter(m, telemetry.BackupBytes, "Plaintext bytes of backups written, restored or verified, by direction (write, restore, verify).", "By"),
		runs:  telemetry.Counter(m, telemetry.BackupRuns, "Backups written, restored or verified, by direction, class and outcome (ok, error).", "{backup}"),
	}
}

// globalInstruments are those of the global provider, created once (it
// keeps every instrument created before the application installs one).
var globalInstruments = sync.OnceValue(func() *instruments { return newInstruments(nil) })

// runTelemetry instruments one backup operation: its span, its bytes, its
// KMS call.
type runTelemetry struct {
	*instruments
	kms      *telemetry.KMS
	dirAttrs []metric.AddOption
	dir      attribute.KeyValue
	span     trace.Span
}

// start begins an operation of direction dir: its span and instruments.
func start(ctx context.Context, mp metric.MeterProvider, tp trace.TracerProvider, dir string) (context.Context, *runTelemetry) {
	in := globalInstruments()
	if mp != nil {
		in = newInstruments(mp)
	}
	t := &runTelemetry{
		instruments: in,
		kms:         telemetry.NewKMS(telemetry.Settings{MeterProvider: mp, TracerProvider: tp}),
		dir:         telemetry.KeyDirection.String(dir),
	}
	t.dirAttrs = telemetry.Add(t.dir)
	ctx, t.span = telemetry.Settings{TracerProvider: tp}.Tracer().Start(ctx, "fieldcrypt.backup."+dir, trace.WithAttributes(t.dir))
	return ctx, t
}

// segment counts the plaintext bytes of one segment.
func (t *runTelemetry) segment(ctx context.Context, n int) {
	t.bytes.Add(ctx, int64(n), t.dirAttrs...)
}

// end counts the operation with its outcome and ends its span.
func (t *runTelemetry) end(ctx context.Context, res *Result, err error) {
	class := "unknown"
	if res != nil && res.Header != nil {
		class = telemetry.ClassLabel(uint8(res.Header.Class))
	}
	outcome := telemetry.OutcomeOK
	if err != nil {
		outcome = telemetry.OutcomeError
		t.span.SetStatus(codes.Error, outcome)
	}
	t.runs.Add(ctx, 1, metric.WithAttributes(t.dir, telemetry.KeyClass.String(class), telemetry.KeyOutcome.String(outcome)))
	t.span.SetAttributes(telemetry.KeyClass.String(class), telemetry.KeyOutcome.String(outcome))
	t.span.End()
}
