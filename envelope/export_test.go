package envelope

// WithoutTelemetry is withoutTelemetry for the benchmarks' baseline.
var WithoutTelemetry = withoutTelemetry
