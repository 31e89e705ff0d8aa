package keyring

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// maxProbes is how many probes a breaker's schedule allows within window
// of opening: the i-th waits min(after·2^i, maxWait) after the previous.
func maxProbes(window, after, maxWait time.Duration) int {
	n, at, wait := 0, time.Duration(0), after
	for {
		at += wait
		if at > window {
			return n
		}
		n++
		wait = min(2*wait, maxWait)
	}
}

// TestBreakerFailsFastAndProbes: with the KMS down and every call taking
// a while to fail (as the SDK's retries do), the first call opens the
// master key's breaker; from then on lookups fail at once, and the only
// KMS calls are the probes the schedule allows. When the KMS is back, the
// first probe closes the breaker and lookups succeed.
func TestBreakerFailsFastAndProbes(t *testing.T) {
	const after, maxWait, window = 10 * time.Millisecond, 40 * time.Millisecond, 400 * time.Millisecond
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	// No failure backoff: every lookup goes to the KMS path, as lookups do
	// once a remembered failure expires.
	app, keys := e.process(testConfig(), WithCircuitBreaker(after, maxWait), WithFailureBackoff(0))
	k := keys[uriCritical]
	k.unwrapDel = 20 * time.Millisecond
	k.mode.Store(modeDown)
	lookup := func() error {
		_, err := app.KEK(context.Background(), ref(envelope.Critical, "", 1))
		return err
	}

	err = lookup()
	require.ErrorIs(t, err, kms.ErrUnavailable)
	require.NotErrorIs(t, err, ErrCircuitOpen, "the first call reaches the KMS")
	require.EqualValues(t, 1, k.unwraps.Load())
	opened := time.Now()
	lookups := 0
	for time.Since(opened) < window {
		err := lookup()
		require.ErrorIs(t, err, envelope.ErrKeyUnavailable)
		require.ErrorIs(t, err, kms.ErrUnavailable)
		require.ErrorIs(t, err, ErrCircuitOpen)
		assert.Contains(t, err.Error(), uriCritical)
		lookups++
	}
	elapsed := time.Since(opened)
	probes := k.unwraps.Load() - 1
	assert.LessOrEqual(t, probes, int64(maxProbes(elapsed, after, maxWait)), "KMS calls while open: only the probes")
	st := app.Stats()
	assert.Equal(t, 1, st.OpenBreakers)
	assert.InDelta(t, probes, st.KMSProbes, 1, "probes (one may be in flight)")
	assert.EqualValues(t, lookups, st.KMSRejected, "every lookup failed without a KMS call (and without waiting for one)")
	assert.Zero(t, sum(keys, unwraps)-k.unwraps.Load(), "other master keys untouched")

	k.mode.Store(modeUp)
	before := app.Stats().KMSProbes
	waitBreakers(t, app)
	assert.LessOrEqual(t, app.Stats().KMSProbes-before, uint64(maxProbesInFlight+1), "the first probe sent after the KMS returned (or one in flight) closes it")
	require.NoError(t, lookup())
	t.Logf("%d lookups failed fast in %v with %d probes; %d probes to recover", lookups, elapsed, probes, app.Stats().KMSProbes-before)
}

// TestBreakerDefinitiveAnswerCloses: a refusal is an answer: a probe that
// gets one closes the breaker (the lookup then fails with the refusal).
func TestBreakerDefinitiveAnswerCloses(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	app, keys := e.process(testConfig(), WithFailureBackoff(0))
	keys[uriLow].mode.Store(modeDown)
	_, err = app.KEK(ctx, ref(envelope.Low, "", 1))
	require.ErrorIs(t, err, kms.ErrUnavailable)
	keys[uriLow].mode.Store(modeDenied)
	waitBreakers(t, app)
	_, err = app.KEK(ctx, ref(envelope.Low, "", 1))
	assert.ErrorIs(t, err, kms.ErrAccessDenied)
	assert.NotErrorIs(t, err, ErrCircuitOpen)
}

// TestBreakerDisabled: WithCircuitBreaker(0, 0) leaves every call to the
// KMS.
func TestBreakerDisabled(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	app, keys := e.process(testConfig(), WithCircuitBreaker(0, 0), WithFailureBackoff(0))
	keys[uriLow].mode.Store(modeDown)
	for range 5 {
		_, err = app.KEK(ctx, ref(envelope.Low, "", 1))
		require.ErrorIs(t, err, kms.ErrUnavailable)
		require.NotErrorIs(t, err, ErrCircuitOpen)
	}
	assert.EqualValues(t, 5, keys[uriLow].unwraps.Load())
	assert.Zero(t, app.Stats().OpenBreakers)
}
