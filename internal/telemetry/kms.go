package telemetry

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Backends: the label values of KeyBackend.
var backends = []string{"local", "awskms", "gcpkms", "other"}

// Backend returns the backend label of a master key URI: local, awskms,
// gcpkms, or other (a scheme registered by the application). Never the
// URI itself: a label is a closed set.
func Backend(uri string) string {
	scheme, _, _ := strings.Cut(uri, "://")
	switch scheme {
	case "local":
		return "local"
	case "aws-kms":
		return "awskms"
	case "gcp-kms":
		return "gcpkms"
	}
	return "other"
}

// KMSOutcome classifies a KMS call's error: ok, unavailable (the KMS did
// not answer, or the call was cut short), denied (access denied, key
// disabled), or error (anything else: authentication failure, key not
// found, bad input).
func KMSOutcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, kms.ErrAccessDenied), errors.Is(err, kms.ErrKeyDisabled):
		return OutcomeDenied
	case errors.Is(err, kms.ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeUnavailable
	}
	return OutcomeError
}

var kmsOutcomes = []string{OutcomeOK, OutcomeError, OutcomeUnavailable, OutcomeDenied}

// KMS ops: the label values of KeyOp on KMS metrics.
const (
	OpWrap   = "wrap"
	OpUnwrap = "unwrap"
)

type kmsKey struct{ backend, op, outcome string }

// KMS instruments calls to master keys: fieldcrypt.kms.calls and
// fieldcrypt.kms.duration, and a client span per call
// (fieldcrypt.kms.wrap, fieldcrypt.kms.unwrap). Safe for concurrent use.
type KMS struct {
	calls  metric.Int64Counter
	dur    metric.Float64Histogram
	tracer trace.Tracer
	add    map[kmsKey][]metric.AddOption
	rec    map[kmsKey][]metric.RecordOption
}

// NewKMS creates the KMS instruments of s's providers. Those of the global
// providers are created once and shared: the global provider keeps every
// instrument created before the application installs one.
func NewKMS(s Settings) *KMS {
	if s.MeterProvider == nil && s.TracerProvider == nil {
		return globalKMS()
	}
	return newKMS(s)
}

var globalKMS = sync.OnceValue(func() *KMS { return newKMS(Settings{}) })

func newKMS(s Settings) *KMS {
	m := s.Meter()
	t := &KMS{
		calls:  Counter(m, KMSCalls, "Calls to master keys in a KMS, by backend, operation (wrap, unwrap) and outcome (ok, error, unavailable, denied).", "{call}"),
		dur:    Seconds(m, KMSDuration, "Latency of calls to master keys in a KMS."),
		tracer: s.Tracer(),
		add:    map[kmsKey][]metric.AddOption{},
		rec:    map[kmsKey][]metric.RecordOption{},
	}
	for _, b := range backends {
		for _, op := range []string{OpWrap, OpUnwrap} {
			for _, o := range kmsOutcomes {
				attrs := []attribute.KeyValue{KeyBackend.String(b), KeyOp.String(op), KeyOutcome.String(o)}
				t.add[kmsKey{b, op, o}] = Add(attrs...)
				t.rec[kmsKey{b, op, o}] = Record(attrs...)
			}
		}
	}
	return t
}

// Start begins a call of op (OpWrap, OpUnwrap) to the master key uri: it
// starts its span and returns the context to make the call with and the
// function that ends it with the call's error. A nil *KMS does nothing.
func (t *KMS) Start(ctx context.Context, uri, op string) (context.Context, func(error)) {
	if t == nil {
		return ctx, func(error) {}
	}
	backend := Backend(uri)
	ctx, span := t.tracer.Start(ctx, "fieldcrypt.kms."+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(KeyBackend.String(backend), KeyOp.String(op)))
	start := time.Now()
	return ctx, func(err error) {
		outcome := KMSOutcome(err)
		key := kmsKey{backend, op, outcome}
		t.calls.Add(ctx, 1, t.add[key]...)
		t.dur.Record(ctx, time.Since(start).Seconds(), t.rec[key]...)
		span.SetAttributes(KeyOutcome.String(outcome))
		if err != nil {
			// The outcome, not the error text: errors name keys (not
			// secret) but a span is no place to collect them.
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
	}
}
