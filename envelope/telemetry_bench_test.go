package envelope_test

import (
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
)

// BenchmarkTelemetryCost gives the cost of counting seals and opens with
// the global (no-op) provider: Seal and Open of 64 bytes with counting on
// ("counted", what every Envelope does) and off ("baseline"), in the same
// run; "sdk" counts into an OpenTelemetry SDK provider (what an installed
// provider costs). docs/performance.md holds the bound (at most 3%) and a
// measurement:
//
//	go test -run '^$' -bench 'TelemetryCost' -count 10 ./envelope | benchstat -col /telemetry -
func BenchmarkTelemetryCost(b *testing.B) {
	for _, op := range []string{"seal", "open"} {
		for _, variant := range []struct {
			name string
			opts []envelope.Option
		}{
			{"baseline", []envelope.Option{envelope.WithoutTelemetry()}},
			{"counted", nil},
			{"sdk", []envelope.Option{envelope.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())))}},
		} {
			e := envelope.New(envelopetest.New(), variant.opts...)
			pt := pt64()
			ct, err := e.Seal(ctx, benchBinding, pt)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(op+"/64B/telemetry="+variant.name, func(b *testing.B) {
				if op == "seal" {
					measure(b, 64, func() error { _, err := e.Seal(ctx, benchBinding, pt); return err })
					return
				}
				measure(b, 64, func() error { _, err := e.Open(ctx, benchBinding, ct); return err })
			})
		}
	}
	// The counting alone, to set against a Seal's or an Open's ns/op: a
	// steadier figure than the difference of two noisy ones.
	e := envelope.New(envelopetest.New())
	b.Run("count-only", func(b *testing.B) {
		measure(b, 0, func() error { e.Count(benchBinding); return nil })
	})
}
