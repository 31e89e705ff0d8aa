package keyring

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// ownedKeys opens the env's master keys through an opener, so that the
// keyring owns (and closes) them.
func ownedKeys(e *env) (Option, map[string]*memKey) {
	keys := e.keys(uriCritical, uriHigh, uriModerate, uriLow)
	return WithOpener(kms.OpenerFunc(func(_ context.Context, uri string) (kms.MasterKey, error) {
		return keys[uri], nil
	})), keys
}

// TestCloseUnderHungKMS: the KMS stops answering (calls block until their
// context ends) while lookups wait on it, a background refresh runs and a
// cold load shares them. Close cancels all of it and returns at once; the
// waiting lookups fail with ErrKeyUnavailable; the master keys the keyring
// opened are closed; nothing runs afterwards.
func TestCloseUnderHungKMS(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)

	open, keys := ownedKeys(e)
	app, _ := e.process(testConfig(), open, WithOpTimeout(time.Hour))
	_, err = app.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Low}) // warm: refreshed below
	require.NoError(t, err)
	for _, k := range keys {
		k.mode.Store(modeHang)
	}

	// A stale entry: served, with a background refresh that hangs.
	e.clock.Advance(DefaultCacheTTL)
	_, err = app.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Low})
	require.NoError(t, err)
	// Cold lookups that hang (several callers share each load).
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for _, c := range []envelope.Class{envelope.Critical, envelope.High, envelope.Moderate} {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := app.KEK(context.Background(), ref(c, "", 1))
				errs <- err
			}()
		}
	}
	require.Eventually(t, func() bool {
		for _, k := range keys {
			if k.unwraps.Load() == 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond, "calls to every master key hang")

	start := time.Now()
	require.NoError(t, app.Close())
	took := time.Since(start)
	assert.Less(t, took, time.Second, "Close under a hung KMS")
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
	}
	for uri, k := range keys {
		assert.EqualValues(t, 1, k.closes.Load(), "master key %s closed once", uri)
	}
	calls := sum(keys, unwraps) + sum(keys, wraps)
	_, err = app.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Low})
	assert.ErrorIs(t, err, ErrClosed)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, calls, sum(keys, unwraps)+sum(keys, wraps), "no KMS call after Close")
	require.NoError(t, app.Close(), "a second Close is a no-op")
	t.Logf("Close took %v with %d KMS calls hanging", took, calls)
}

// TestCloseWaitsBoundedForContextBlindKeys: a master key that ignores its
// context (it sleeps) cannot hold Close for longer than closeWait; Close
// says so.
func TestCloseWaitsBoundedForContextBlindKeys(t *testing.T) {
	defer func(d time.Duration) { closeWait = d }(closeWait)
	closeWait = 50 * time.Millisecond
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	app, keys := e.process(testConfig())
	keys[uriLow].unwrapDel = 2 * time.Second
	go func() { _, _ = app.KEK(context.Background(), ref(envelope.Low, "", 1)) }()
	require.Eventually(t, func() bool { return keys[uriLow].unwraps.Load() > 0 }, 10*time.Second, time.Millisecond)
	start := time.Now()
	err = app.Close()
	assert.ErrorIs(t, err, ErrClosed)
	assert.Less(t, time.Since(start), time.Second)
	assert.Zero(t, keys[uriLow].closes.Load(), "keys given with WithMasterKeys stay the caller's")
	app.wg.Wait() // let the sleeper finish before the test's cleanup
}
