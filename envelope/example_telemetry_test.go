package envelope_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
)

// Counting seals and opens with a provider of the application's (here one
// read by hand; in production one with an exporter, or the global one
// installed with otel.SetMeterProvider, which needs no option). A value
// that fails authentication is counted as auth_failed.
func ExampleWithMeterProvider() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	e := envelope.New(envelopetest.New(), envelope.WithMeterProvider(mp))

	b := envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn", Row: "42"}
	ct, _ := e.Seal(ctx, b, []byte("123-45-6789"))
	_, _ = e.Open(ctx, b, ct)
	ct[len(ct)-1] ^= 1 // tampered
	_, _ = e.Open(ctx, b, ct)

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
			class, _ := p.Attributes.Value("class")
			outcome, _ := p.Attributes.Value("outcome")
			fmt.Println(m.Name, class.AsString(), outcome.AsString(), p.Value)
		}
	}
	// Unordered output:
	// fieldcrypt.seal critical ok 1
	// fieldcrypt.open critical ok 1
	// fieldcrypt.open critical auth_failed 1
}
