// Package telemetry holds what every instrumented fieldcrypt package shares
// for OpenTelemetry: the metric names, the attribute keys and values, and
// the construction of instruments from a provider, so that keyring,
// envelope, gormcrypt, reencrypt and backup report under the same names.
//
// Providers: a package takes a metric.MeterProvider and a
// trace.TracerProvider in its options; nil means the global ones
// (otel.GetMeterProvider, otel.GetTracerProvider), which do nothing until
// the application installs providers (otel.SetMeterProvider).
//
// Labels never carry a value, a row key or (unless the operator turns
// tenant labels on) a tenant: only the closed sets of names below, the
// class name and the KMS backend.
package telemetry

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of every meter and tracer.
const ScopeName = "github.com/fieldcrypt/fieldcrypt"

// Metric names (OpenTelemetry form; the Prometheus exporter turns the dots
// into underscores and adds _total to counters and a unit suffix:
// fieldcrypt_kms_calls_total, fieldcrypt_kms_duration_seconds, ...).
const (
	KMSCalls          = "fieldcrypt.kms.calls"            // counter: backend, op, outcome
	KMSDuration       = "fieldcrypt.kms.duration"         // histogram, s: backend, op, outcome
	BreakerOpen       = "fieldcrypt.kms.breaker.open"     // up-down counter: backend (master keys whose breaker is open)
	BreakerTransition = "fieldcrypt.kms.breaker.changes"  // counter: backend, state=open|closed
	BreakerRejected   = "fieldcrypt.kms.breaker.rejected" // counter: backend, op (calls failed at once, no KMS call)
	KEKCache          = "fieldcrypt.kek.cache"            // counter: class, result=hit|miss|refresh|refresh_failed|stale
	Seal              = "fieldcrypt.seal"                 // counter: class, kind, outcome
	Open              = "fieldcrypt.open"                 // counter: class, kind, outcome
	ReencryptRows     = "fieldcrypt.reencrypt.rows"       // counter: mode, outcome
	ReencryptChunks   = "fieldcrypt.reencrypt.chunks"     // counter: mode, outcome=done|failed
	ReencryptChunkDur = "fieldcrypt.reencrypt.chunk.duration"
	ReencryptTakeover = "fieldcrypt.reencrypt.lease.takeovers" // counter: mode
	BackupBytes       = "fieldcrypt.backup.bytes"              // counter, By: direction=write|restore|verify, class
	BackupRuns        = "fieldcrypt.backup.runs"               // counter: direction, class, outcome=ok|error
)

// Attribute keys.
const (
	KeyBackend   = attribute.Key("backend")
	KeyOp        = attribute.Key("op")
	KeyOutcome   = attribute.Key("outcome")
	KeyResult    = attribute.Key("result")
	KeyClass     = attribute.Key("class")
	KeyKind      = attribute.Key("kind")
	KeyTenant    = attribute.Key("tenant")
	KeyMode      = attribute.Key("mode")
	KeyDirection = attribute.Key("direction")
	KeyState     = attribute.Key("state")
)

// Outcomes of seals and opens.
const (
	OutcomeOK             = "ok"
	OutcomeAuthFailed     = "auth_failed"
	OutcomeKeyDestroyed   = "key_destroyed"
	OutcomeUnknownVersion = "unknown_version"
	OutcomeError          = "error"
)

// Outcomes of KMS calls (plus OutcomeOK and OutcomeError).
const (
	OutcomeUnavailable = "unavailable"
	OutcomeDenied      = "denied"
)

// Settings are a package's telemetry options. The zero value uses the
// global providers, without tenant labels.
type Settings struct {
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// TenantLabels adds the tenant to the metrics that have a scope (seal,
	// open, KEK cache). Off by default: tenants are names an operator may
	// not want on a dashboard, and each one is a new series.
	TenantLabels bool
}

// Meter returns the fieldcrypt meter of the configured provider (the
// global one when none is).
func (s Settings) Meter() metric.Meter {
	mp := s.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(ScopeName)
}

// Tracer returns the fieldcrypt tracer of the configured provider (the
// global one when none is).
func (s Settings) Tracer() trace.Tracer {
	tp := s.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(ScopeName)
}

// Counter creates an Int64Counter. Instrument errors (an invalid name:
// ours are constants) go to the global error handler; the instrument
// returned is then a working no-op, so callers never check.
func Counter(m metric.Meter, name, desc, unit string) metric.Int64Counter {
	c, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
	if err != nil {
		otel.Handle(err)
	}
	return c
}

// UpDown creates an Int64UpDownCounter (see Counter).
func UpDown(m metric.Meter, name, desc, unit string) metric.Int64UpDownCounter {
	c, err := m.Int64UpDownCounter(name, metric.WithDescription(desc), metric.WithUnit(unit))
	if err != nil {
		otel.Handle(err)
	}
	return c
}

// Seconds creates a Float64Histogram in seconds (see Counter), with
// buckets suited to calls from a millisecond to a minute.
func Seconds(m metric.Meter, name, desc string) metric.Float64Histogram {
	h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
	if err != nil {
		otel.Handle(err)
	}
	return h
}

// Add returns the options of an Add or Record with attrs, built once: keep
// the result and pass it on every call, so the hot path allocates nothing.
func Add(attrs ...attribute.KeyValue) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
}

// Record is Add for histograms.
func Record(attrs ...attribute.KeyValue) []metric.RecordOption {
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
}

// classNames are envelope's class names by class byte (envelope imports
// this package, so it cannot be asked).
var classNames = [...]string{1: "critical", 2: "high", 3: "moderate", 4: "low", 5: "public"}

// NumClasses bounds the class byte of ClassLabel's tables: 0 (invalid)
// and 1-5.
const NumClasses = len(classNames)

// ClassIndex returns c if it is a class byte (1-5), else 0 (invalid).
func ClassIndex(c uint8) int {
	if int(c) < len(classNames) {
		return int(c)
	}
	return 0
}

// ClassLabel returns the class label of a class byte: its name, or
// "invalid".
func ClassLabel(c uint8) string {
	if i := ClassIndex(c); i > 0 {
		return classNames[i]
	}
	return "invalid"
}
