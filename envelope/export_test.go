package envelope

import "context"

// WithoutTelemetry is withoutTelemetry for the benchmarks' baseline.
var WithoutTelemetry = withoutTelemetry

// Count counts one successful random seal of b: the instrumentation alone,
// for BenchmarkTelemetryCost.
func (e *Envelope) Count(b Binding) {
	e.count(context.Background(), false, b.Class, b.Tenant, kindRandom, nil)
}
