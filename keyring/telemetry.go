package keyring

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry"
)

// WithMeterProvider makes the keyring report its metrics (KMS calls and
// latency, KEK cache results, circuit breakers: docs/operations.md,
// "Metrics and traces") to mp instead of the global provider
// (otel.GetMeterProvider, which does nothing unless the application
// installs one).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(k *Keyring) { k.telSettings.MeterProvider = mp }
}

// WithTracerProvider makes the keyring trace its KMS calls and KEK loads
// and refreshes with tp instead of the global provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(k *Keyring) { k.telSettings.TracerProvider = tp }
}

// WithTenantLabels adds a tenant label to the KEK cache metric. Off by
// default: each tenant is a new series, and tenant names may be
// sensitive. Values and row keys are never labels.
func WithTenantLabels() Option {
	return func(k *Keyring) { k.telSettings.TenantLabels = true }
}

// Cache results: the label values of fieldcrypt.kek.cache.
const (
	cacheHit = iota
	cacheMiss
	cacheStale
	cacheRefresh
	cacheRefreshFailed
	numCacheResults
)

var cacheResults = [numCacheResults]string{"hit", "miss", "stale", "refresh", "refresh_failed"}

// keyringTelemetry holds the keyring's instruments, created once in New.
type keyringTelemetry struct {
	*keyringInstruments
	tenants bool
	kms     *telemetry.KMS
	tracer  trace.Tracer
}

// keyringInstruments are the keyring's instruments of one provider, with
// their attribute sets built in advance.
type keyringInstruments struct {
	cache          metric.Int64Counter
	cacheAttrs     [telemetry.NumClasses][numCacheResults][]metric.AddOption
	breakerOpen    metric.Int64UpDownCounter
	breakerChanges metric.Int64Counter
	rejected       metric.Int64Counter
}

// globalKeyringInstruments are those of the global provider, created once:
// the global provider keeps every instrument created before the
// application installs one.
var globalKeyringInstruments = sync.OnceValue(func() *keyringInstruments { return newKeyringInstruments(nil) })

func newKeyringTelemetry(s telemetry.Settings) *keyringTelemetry {
	in := globalKeyringInstruments()
	if s.MeterProvider != nil {
		in = newKeyringInstruments(s.MeterProvider)
	}
	return &keyringTelemetry{keyringInstruments: in, tenants: s.TenantLabels, kms: telemetry.NewKMS(s), tracer: s.Tracer()}
}

func newKeyringInstruments(mp metric.MeterProvider) *keyringInstruments {
	m := telemetry.Settings{MeterProvider: mp}.Meter()
	t := &keyringInstruments{
		cache: telemetry.Counter(m, telemetry.KEKCache,
			"KEK lookups by class and result: hit (fresh cache entry), miss (store read and KMS unwrap), stale (served past cache_ttl or state_refresh while refreshing), refresh and refresh_failed (background revalidations).", "{lookup}"),
		breakerOpen: telemetry.UpDown(m, telemetry.BreakerOpen,
			"Master keys whose circuit breaker is open now (calls fail at once).", "{key}"),
		breakerChanges: telemetry.Counter(m, telemetry.BreakerTransition,
			"Circuit breaker state changes by backend and new state (open, closed).", "{change}"),
		rejected: telemetry.Counter(m, telemetry.BreakerRejected,
			"Calls to master keys failed at once by an open circuit breaker (no KMS call made).", "{call}"),
	}
	for c := range telemetry.NumClasses {
		for r := range numCacheResults {
			t.cacheAttrs[c][r] = telemetry.Add(telemetry.KeyClass.String(telemetry.ClassLabel(uint8(c))), telemetry.KeyResult.String(cacheResults[r]))
		}
	}
	return t
}

// cacheResult counts a KEK cache result for scope.
func (t *keyringTelemetry) cacheResult(ctx context.Context, s envelope.Scope, result int) {
	if t.tenants && s.Tenant != "" {
		t.cache.Add(ctx, 1, metric.WithAttributes(telemetry.KeyClass.String(telemetry.ClassLabel(uint8(s.Class))),
			telemetry.KeyResult.String(cacheResults[result]), telemetry.KeyTenant.String(s.Tenant)))
		return
	}
	t.cache.Add(ctx, 1, t.cacheAttrs[telemetry.ClassIndex(uint8(s.Class))][result]...)
}

// breaker counts a circuit breaker opening (open) or closing; gauge says
// whether fieldcrypt.kms.breaker.open changes (not for a breaker the
// keyring's Close already stopped counting).
func (t *keyringTelemetry) breaker(uri string, open, gauge bool) {
	ctx := context.Background()
	b := telemetry.KeyBackend.String(telemetry.Backend(uri))
	state, delta := "closed", int64(-1)
	if open {
		state, delta = "open", 1
	}
	if gauge {
		t.breakerOpen.Add(ctx, delta, metric.WithAttributes(b))
	}
	t.breakerChanges.Add(ctx, 1, metric.WithAttributes(b, telemetry.KeyState.String(state)))
}

// span starts a span of the keyring's own work (KEK loads, refreshes).
func (t *keyringTelemetry) span(ctx context.Context, name string, s envelope.Scope) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, name, trace.WithAttributes(telemetry.KeyClass.String(telemetry.ClassLabel(uint8(s.Class)))))
}
