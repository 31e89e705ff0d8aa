package envelope

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel/metric"

	"github.com/fieldcrypt/fieldcrypt/internal/telemetry"
)

// WithMeterProvider makes the envelope count its seals and opens
// (fieldcrypt.seal, fieldcrypt.open: class, kind, outcome; see
// docs/operations.md, "Metrics and traces") with mp instead of the global
// provider (otel.GetMeterProvider, which does nothing unless the
// application installs one). Seals and opens are counted, not traced: a
// span per value would cost more than the value.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(e *Envelope) { e.mp, e.mpSet = mp, true }
}

// WithTenantLabels adds the tenant to the seal and open counters. Off by
// default: each tenant is a new series, and tenant names may be
// sensitive. Values and row keys are never labels. With it, each counted
// operation of a tenant builds its attribute set (one allocation).
func WithTenantLabels() Option { return func(e *Envelope) { e.tenantLabels = true } }

// withoutTelemetry turns counting off: the benchmarks' baseline.
func withoutTelemetry() Option { return func(e *Envelope) { e.noTel = true } }

// Kinds of value: the label values of telemetry.KeyKind.
const (
	kindRandom = iota
	kindDeterministic
	kindBlindIndex
	numKinds
)

var kindNames = [numKinds]string{"random", "deterministic", "blindindex"}

// Outcomes, in the order of outcomeNames.
const (
	outcomeOK = iota
	outcomeAuth
	outcomeDestroyed
	outcomeUnknown
	outcomeError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{telemetry.OutcomeOK, telemetry.OutcomeAuthFailed, telemetry.OutcomeKeyDestroyed, telemetry.OutcomeUnknownVersion, telemetry.OutcomeError}

func outcomeOf(err error) int {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, ErrAuthentication):
		return outcomeAuth
	case errors.Is(err, ErrKeyDestroyed):
		return outcomeDestroyed
	case errors.Is(err, ErrUnknownKey):
		return outcomeUnknown
	}
	return outcomeError
}

type attrTable = [telemetry.NumClasses][numKinds][numOutcomes][]metric.AddOption

// envInstruments are the counters of one provider with every attribute set
// built in advance, so counting allocates nothing.
type envInstruments struct {
	seal, open           metric.Int64Counter
	sealAttrs, openAttrs attrTable
}

func newEnvInstruments(mp metric.MeterProvider) *envInstruments {
	m := telemetry.Settings{MeterProvider: mp}.Meter()
	t := &envInstruments{
		seal: telemetry.Counter(m, telemetry.Seal, "Values sealed (Seal, SealDeterministic, ComputeBlindIndex and their Candidates forms) by class, kind (random, deterministic, blindindex) and outcome.", "{value}"),
		open: telemetry.Counter(m, telemetry.Open, "Values opened by class, kind (random, deterministic) and outcome (ok, auth_failed, key_destroyed, unknown_version, error).", "{value}"),
	}
	for c := range telemetry.NumClasses {
		for k := range numKinds {
			for o := range numOutcomes {
				attrs := telemetry.Add(telemetry.KeyClass.String(telemetry.ClassLabel(uint8(c))),
					telemetry.KeyKind.String(kindNames[k]), telemetry.KeyOutcome.String(outcomeNames[o]))
				t.sealAttrs[c][k][o], t.openAttrs[c][k][o] = attrs, attrs
			}
		}
	}
	return t
}

// globalInstruments are those of the global provider, created once: the
// global provider keeps every instrument created before the application
// installs one, so creating them per Envelope would grow it.
var globalInstruments = sync.OnceValue(func() *envInstruments { return newEnvInstruments(nil) })

// initTelemetry sets e.tel from the options.
func (e *Envelope) initTelemetry() {
	switch {
	case e.noTel:
	case e.mpSet && e.mp != nil:
		e.tel = newEnvInstruments(e.mp)
	default:
		e.tel = globalInstruments()
	}
}

// count counts one seal (open false) or open of a value of class and
// tenant, of kind, that ended with err.
func (e *Envelope) count(ctx context.Context, open bool, class Class, tenant string, kind int, err error) {
	t := e.tel
	if t == nil {
		return
	}
	c, attrs := t.seal, &t.sealAttrs
	if open {
		c, attrs = t.open, &t.openAttrs
	}
	o := outcomeOf(err)
	if e.tenantLabels && tenant != "" {
		c.Add(ctx, 1, metric.WithAttributes(telemetry.KeyClass.String(telemetry.ClassLabel(uint8(class))),
			telemetry.KeyKind.String(kindNames[kind]), telemetry.KeyOutcome.String(outcomeNames[o]), telemetry.KeyTenant.String(tenant)))
		return
	}
	c.Add(ctx, 1, attrs[telemetry.ClassIndex(uint8(class))][kind][o]...)
}
