package keyring

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/fieldcrypt/fieldcrypt/internal/telemetry"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Defaults for WithCircuitBreaker.
const (
	DefaultProbeAfter = 250 * time.Millisecond
	DefaultMaxProbe   = time.Second
)

// guardedKey is a master key as the keyring calls it: every call is
// counted, and a circuit breaker fails calls at once while the KMS is
// known to be unreachable.
//
// Why: once the KMS is down, each call otherwise waits for the SDK's
// retries (seconds) before failing, so every lookup that needs the KMS
// blocks that long and throughput falls to nothing. The breaker opens on
// the first call that finds the KMS unreachable (kms.ErrUnavailable: the
// SDK has already retried); while it is open, calls fail immediately with
// ErrCircuitOpen (and kms.ErrUnavailable) and make no KMS call. One
// background probe replays the call that opened it after ProbeAfter, then
// after twice that, up to MaxProbe between probes (a probe does not wait
// for the one before, which may be stuck in the SDK's retries); the first
// answer from the KMS (a success, or a definitive refusal: it answered)
// closes the breaker, so lookups recover within about MaxProbe of the KMS
// returning. While open, the KMS sees only the probes.
type guardedKey struct {
	k   *Keyring
	mk  kms.MasterKey
	uri string

	mu    sync.Mutex
	open  bool
	since time.Time
	cause string        // the failure that opened it
	wait  time.Duration // before the next probe
	probe func(context.Context) error
	gen   uint64 // openings, so that one probe loop runs per opening
	// counted says the breaker is counted in fieldcrypt.kms.breaker.open
	// (from its opening to its closing, or to the keyring's Close).
	counted bool
}

func (k *Keyring) guard(mk kms.MasterKey) *guardedKey {
	return &guardedKey{k: k, mk: mk, uri: mk.URI()}
}

func (g *guardedKey) URI() string { return g.uri }

// Wrap wraps key under the master key unless the breaker is open.
func (g *guardedKey) Wrap(ctx context.Context, key []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := g.admit("wrap"); err != nil {
		return nil, err
	}
	g.k.stats.kmsWrap.Add(1)
	ctx, end := g.k.tel.kms.Start(ctx, g.uri, telemetry.OpWrap)
	out, err := g.mk.Wrap(ctx, key, ec)
	end(err)
	g.observe(err, func() func(context.Context) error { return g.wrapProbe(len(key), ec) })
	return out, err
}

// Unwrap unwraps under the master key unless the breaker is open.
func (g *guardedKey) Unwrap(ctx context.Context, wrapped []byte, ec kms.EncryptionContext) ([]byte, error) {
	if err := g.admit("unwrap"); err != nil {
		return nil, err
	}
	g.k.stats.kmsUnwrap.Add(1)
	ctx, end := g.k.tel.kms.Start(ctx, g.uri, telemetry.OpUnwrap)
	out, err := g.mk.Unwrap(ctx, wrapped, ec)
	end(err)
	g.observe(err, func() func(context.Context) error { return g.unwrapProbe(wrapped, ec) })
	return out, err
}

// wrapProbe wraps a throwaway random key of the same size under the same
// context: it proves the KMS answers and never touches a real key.
func (g *guardedKey) wrapProbe(n int, ec kms.EncryptionContext) func(context.Context) error {
	ec = maps.Clone(ec)
	return func(ctx context.Context) error {
		key := make([]byte, n)
		defer clear(key)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		g.k.stats.kmsWrap.Add(1)
		ctx, end := g.k.tel.kms.Start(ctx, g.uri, telemetry.OpWrap)
		_, err := g.mk.Wrap(ctx, key, ec)
		end(err)
		return err
	}
}

// unwrapProbe replays an unwrap; the key it returns is cleared at once.
func (g *guardedKey) unwrapProbe(wrapped []byte, ec kms.EncryptionContext) func(context.Context) error {
	wrapped, ec = slices.Clone(wrapped), maps.Clone(ec)
	return func(ctx context.Context) error {
		g.k.stats.kmsUnwrap.Add(1)
		ctx, end := g.k.tel.kms.Start(ctx, g.uri, telemetry.OpUnwrap)
		raw, err := g.mk.Unwrap(ctx, wrapped, ec)
		end(err)
		clear(raw)
		return err
	}
}

// admit fails a call at once while the breaker is open.
func (g *guardedKey) admit(op string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return nil
	}
	g.k.stats.rejected.Add(1)
	g.k.tel.rejected.Add(context.Background(), 1, metric.WithAttributes(telemetry.KeyBackend.String(telemetry.Backend(g.uri)), telemetry.KeyOp.String(op)))
	return &kms.Error{Op: op, URI: g.uri, Err: fmt.Errorf("%w: %w: the KMS has not answered since %s (%s); next probe within %v",
		kms.ErrUnavailable, ErrCircuitOpen, g.since.UTC().Format(time.RFC3339Nano), g.cause, g.wait)}
}

// unreachable reports whether err says the KMS did not answer (as opposed
// to answering with a refusal, or the caller giving up).
func unreachable(err error) bool {
	return errors.Is(err, kms.ErrUnavailable) && !errors.Is(err, context.Canceled)
}

// observe opens the breaker on a call that found the KMS unreachable, and
// closes it on any answer.
func (g *guardedKey) observe(err error, probe func() func(context.Context) error) {
	switch {
	case unreachable(err):
		g.trip(err, probe)
	case err == nil || !errors.Is(err, context.Canceled):
		g.reset()
	}
}

func (g *guardedKey) trip(err error, probe func() func(context.Context) error) {
	if g.k.probeAfter <= 0 {
		return // breaker disabled
	}
	g.mu.Lock()
	if g.open { // a call started before it opened
		g.mu.Unlock()
		return
	}
	g.open, g.since, g.cause, g.wait, g.probe = true, time.Now(), err.Error(), g.k.probeAfter, probe()
	g.gen++
	gen := g.gen
	g.counted = true
	g.mu.Unlock()
	g.k.tel.breaker(g.uri, true, true)
	if !g.k.spawnProber(func() { g.run(gen) }) {
		g.reset() // closed keyring: nothing to probe for
	}
}

// reset closes the breaker. Failures remembered while it was open
// (WithFailureBackoff) are forgotten, so lookups retry at once.
func (g *guardedKey) reset() {
	g.mu.Lock()
	was, counted := g.open, g.counted
	g.open, g.probe, g.counted = false, nil, false
	g.mu.Unlock()
	if was {
		g.k.tel.breaker(g.uri, false, counted)
		g.k.mu.Lock()
		clear(g.k.fails)
		clear(g.k.scopeFails)
		g.k.mu.Unlock()
	}
}

// uncount stops counting the breaker as open (the keyring closes).
func (g *guardedKey) uncount() {
	g.mu.Lock()
	counted := g.counted
	g.counted = false
	g.mu.Unlock()
	if counted {
		g.k.tel.breakerOpen.Add(context.Background(), -1, metric.WithAttributes(telemetry.KeyBackend.String(telemetry.Backend(g.uri))))
	}
}

// isOpen reports whether the breaker is open.
func (g *guardedKey) isOpen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// maxProbesInFlight bounds the probes of one breaker running at once.
// Each is cut after probeTimeout: newer ones have been sent meanwhile.
const maxProbesInFlight = 4

func (k *Keyring) probeTimeout() time.Duration { return min(k.opTO, max(3*k.probeMax, time.Second)) }

// run starts probes on the backoff schedule until one gets an answer (or
// a call does), the breaker opens anew (another run takes over), or the
// keyring closes. A probe does not wait for the previous one: a probe
// sent while the KMS was down can sit in the SDK's retry backoff for
// seconds, and the first one sent after the KMS is back must not queue
// behind it. At most maxProbesInFlight run at once, so the KMS still sees
// at most one new call per step of the schedule.
func (g *guardedKey) run(gen uint64) {
	var inFlight atomic.Int32
	for {
		g.mu.Lock()
		wait, probe, current := g.wait, g.probe, g.open && g.gen == gen
		g.wait = min(2*g.wait, g.k.probeMax)
		g.mu.Unlock()
		if !current {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-g.k.life.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !g.current(gen) || inFlight.Load() >= maxProbesInFlight {
			continue
		}
		inFlight.Add(1)
		g.k.spawnProber(func() {
			defer inFlight.Add(-1)
			ctx, cancel := g.k.background()
			defer cancel()
			ctx, cancelProbe := context.WithTimeout(ctx, g.k.probeTimeout())
			defer cancelProbe()
			err := probe(ctx)
			g.k.stats.probes.Add(1)
			if g.k.life.Err() == nil && !unreachable(err) {
				g.reset()
			}
		})
	}
}

// current reports whether the breaker is still open since the opening
// that started run gen.
func (g *guardedKey) current(gen uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open && g.gen == gen
}

// WithCircuitBreaker sets when a master key's circuit breaker first probes
// an unreachable KMS (after, default 250 ms) and the longest wait between
// probes (maxWait, default 1 s; the wait doubles from after). While a breaker
// is open, calls to that master key fail at once with ErrCircuitOpen and
// kms.ErrUnavailable; lookups recover with the first probe the KMS
// answers, within maxWait of its return. after <= 0 disables the breakers: every call then waits for the
// KMS (and the SDK's retries).
func WithCircuitBreaker(after, maxWait time.Duration) Option {
	return func(k *Keyring) {
		k.probeAfter, k.probeMax = after, max(after, maxWait)
	}
}
