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

// TestMillionLookups: one KEK lookup per value, as the envelope does, for
// 1,000,000 values over the four encrypted classes (half sealed: primary;
// half opened: by version). 8 KMS calls in the process that serves the
// lookups: 4 KEK unwraps and 4 class-key unwraps (to verify the scope
// states); 8 wraps created the keyring (4 KEKs, 4 class keys).
func TestMillionLookups(t *testing.T) {
	const n = 1_000_000
	e := newEnv(t, nil)
	admin, adminKeys := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)

	app, appKeys := e.process(testConfig())
	scopes := make([]envelope.Scope, len(encryptedClasses))
	for i, c := range encryptedClasses {
		scopes[i] = envelope.Scope{Class: c}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		s := scopes[i%len(scopes)]
		var k *envelope.KEK
		if i%2 == 0 {
			k, err = app.PrimaryKEK(ctx, s) // seal
		} else {
			k, err = app.KEK(ctx, envelope.KEKRef{Class: s.Class, Version: 1}) // open
		}
		if err != nil || k.Ref().Class != s.Class {
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	elapsed := time.Since(start)
	total := sum(adminKeys, wraps) + sum(adminKeys, unwraps) + sum(appKeys, wraps) + sum(appKeys, unwraps)
	assert.LessOrEqual(t, total, int64(16), "KMS calls for %d lookups", n)
	assert.EqualValues(t, 8, sum(appKeys, unwraps))
	for _, c := range encryptedClasses {
		assert.Equal(t, 1, appKeys[app.classURI(c)].unwrapsOf(c, "", 1), "one unwrap of %s/v1", c)
	}
	st := app.Stats()
	assert.EqualValues(t, 8, st.KMSCalls())
	assert.EqualValues(t, n-4, st.CacheHits)
	assert.EqualValues(t, 4, st.CacheMisses)
	t.Logf("%d lookups over 4 classes: %d KMS calls in all (app: %+v), %v (%v/lookup)", n, total, st, elapsed, elapsed/n)
}

// TestColdCacheSingleFlight: 8 goroutines x 100,000 lookups start together
// on a cold cache holding 8 KEK versions: exactly one unwrap per version
// and per class key.
func TestColdCacheSingleFlight(t *testing.T) {
	const goroutines, ops = 8, 100_000
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	for _, c := range encryptedClasses {
		_, err := admin.Rotate(ctx, envelope.Scope{Class: c}) // v2 primary, v1 decrypt-only and search key
		require.NoError(t, err)
	}

	app, keys := e.process(testConfig())
	for _, k := range keys {
		k.unwrapDel = 20 * time.Millisecond // a slow KMS widens the race
	}
	gate := make(chan struct{})
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-gate
			for i := 0; i < ops; i++ {
				c := encryptedClasses[(g+i)%len(encryptedClasses)]
				var err error
				switch i % 3 {
				case 0:
					_, err = app.PrimaryKEK(ctx, envelope.Scope{Class: c})
				case 1:
					_, err = app.KEK(ctx, ref(c, "", 1))
				default:
					_, err = app.SearchKEKs(ctx, envelope.Scope{Class: c})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	elapsed := time.Since(start)
	for _, c := range encryptedClasses {
		k := keys[app.classURI(c)]
		for v := uint32(1); v <= 2; v++ {
			assert.Equal(t, 1, k.unwrapsOf(c, "", v), "unwraps of %s/v%d", c, v)
		}
	}
	st := app.Stats()
	assert.EqualValues(t, 8+4, st.KMSUnwrapCalls)
	assert.EqualValues(t, 0, st.KMSWrapCalls)
	assert.LessOrEqual(t, st.StoreReads, uint64(8), "store reads are single-flighted too")
	t.Logf("%d goroutines x %d ops, cold: %+v in %v", goroutines, ops, st, elapsed)
}

// TestKMSOutage: once warm, a KMS outage shorter than MaxAge fails no
// lookups; past MaxAge they fail with ErrKeyUnavailable naming the class
// and master key; when the KMS is back they work again.
func TestKMSOutage(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	app, keys := e.process(testConfig())
	lookups := func() error {
		for _, c := range encryptedClasses {
			if _, err := app.PrimaryKEK(ctx, envelope.Scope{Class: c}); err != nil { // write path
				return err
			}
			if _, err := app.KEK(ctx, ref(c, "", 1)); err != nil { // read path
				return err
			}
		}
		return nil
	}
	require.NoError(t, lookups()) // warm
	for _, k := range keys {
		k.mode.Store(modeDown)
	}
	before := sum(keys, unwraps)
	step := 30 * time.Minute
	for elapsed := step; elapsed < DefaultMaxAge; elapsed += step {
		e.clock.Advance(step)
		require.NoError(t, lookups(), "at +%v into the outage", elapsed)
		app.settle()
	}
	st := app.Stats()
	assert.Greater(t, st.StaleServes, uint64(0))
	assert.Greater(t, st.RefreshErrors, uint64(0))
	// One refresh attempt per KEK and per class key per step at most
	// (retry interval 30 s), fewer with the circuit breakers open: only
	// their probes reach the KMS.
	attempts := sum(keys, unwraps) - before
	assert.LessOrEqual(t, attempts, int64(8*47))
	assert.GreaterOrEqual(t, attempts, int64(4), "each master key was tried")
	assert.Greater(t, st.KMSRejected, uint64(0), "refreshes failed fast")

	e.clock.Advance(step) // now past MaxAge since the last successful unwrap
	for _, c := range encryptedClasses {
		uri := app.classURI(c)
		for _, call := range []func() error{
			func() error { _, err := app.PrimaryKEK(ctx, envelope.Scope{Class: c}); return err },
			func() error { _, err := app.KEK(ctx, ref(c, "", 1)); return err },
		} {
			err := call()
			require.Error(t, err)
			assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
			assert.ErrorIs(t, err, kms.ErrUnavailable)
			assert.Contains(t, err.Error(), c.String())
			assert.Contains(t, err.Error(), uri)
		}
	}
	calls := sum(keys, unwraps)
	require.Error(t, lookups())
	assert.Equal(t, calls, sum(keys, unwraps), "recent failures fail fast, without KMS calls")
	for _, k := range keys {
		k.mode.Store(modeUp)
	}
	waitBreakers(t, app)
	require.NoError(t, lookups(), "recovers when the KMS is back, without waiting out the failure backoff")
}

// TestRevocationEvicts: a definitive KMS answer (access denied) is not an
// outage: the entry is evicted at the first refresh after CacheTTL.
func TestRevocationEvicts(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	app, keys := e.process(testConfig())
	z := watchZero(app)
	app.grace = time.Minute
	held, err := app.KEK(ctx, ref(envelope.Low, "", 1))
	require.NoError(t, err)
	keys[uriLow].mode.Store(modeDenied)
	e.clock.Advance(DefaultCacheTTL)
	_, err = app.KEK(ctx, ref(envelope.Low, "", 1))
	require.NoError(t, err, "served stale while the refresh runs")
	app.settle()
	_, err = app.KEK(ctx, ref(envelope.Low, "", 1))
	assert.ErrorIs(t, err, kms.ErrAccessDenied)
	assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
	assert.False(t, z.has(held), "not zeroed during the grace period")
	e.clock.Advance(time.Minute)
	_, _ = app.KEK(ctx, ref(envelope.Low, "", 1)) // any slow path sweeps
	assert.True(t, z.has(held), "zeroed after the grace period")
}

// TestOtherProcessChangesSeenWithinStateRefresh: a rotation, retirement
// or destruction by another process reaches a running keyring within
// StateRefresh plus one store read (counted, on a fake clock), and the
// state refreshes cost no KMS calls.
func TestOtherProcessChangesSeenWithinStateRefresh(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	s := envelope.Scope{Class: envelope.Critical}
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	app, _ := e.process(testConfig())
	z := watchZero(app)
	v1, err := app.PrimaryKEK(ctx, s)
	require.NoError(t, err)
	reads, kmsCalls := app.Stats().StoreReads, app.Stats().KMSCalls()

	_, err = admin.Rotate(ctx, s)
	require.NoError(t, err)
	e.clock.Advance(DefaultStateRefresh - time.Millisecond)
	p, err := app.PrimaryKEK(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), p.Ref().Version, "younger than StateRefresh: the cached state is used")
	assert.Equal(t, reads, app.Stats().StoreReads, "no store read")

	e.clock.Advance(time.Millisecond)
	p, err = app.PrimaryKEK(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), p.Ref().Version, "served while one background read refreshes it")
	app.settle()
	assert.Equal(t, reads+1, app.Stats().StoreReads, "one store read")
	p, err = app.PrimaryKEK(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), p.Ref().Version, "rotation seen after StateRefresh + one store read")
	assert.Equal(t, kmsCalls+1, app.Stats().KMSCalls(), "one KMS call: the unwrap of v2")

	// State refreshes are store reads only: 20 of them, no KMS call.
	reads, kmsCalls = app.Stats().StoreReads, app.Stats().KMSCalls()
	for range 20 {
		e.clock.Advance(DefaultStateRefresh)
		_, err = app.PrimaryKEK(ctx, s)
		require.NoError(t, err)
		app.settle()
	}
	assert.Equal(t, reads+20, app.Stats().StoreReads)
	assert.Equal(t, kmsCalls, app.Stats().KMSCalls(), "state refreshes make no KMS calls")

	_, err = admin.RotateSearch(ctx, s)
	require.NoError(t, err)
	_, err = admin.FinishSearchRotation(ctx, s)
	require.NoError(t, err)
	_, err = admin.Destroy(ctx, ref(envelope.Critical, "", 1)) // 10 minutes after the rotation
	require.NoError(t, err)
	e.clock.Advance(DefaultStateRefresh)
	_, _ = app.KEK(ctx, ref(envelope.Critical, "", 1)) // stale serve, refresh
	app.settle()
	_, err = app.KEK(ctx, ref(envelope.Critical, "", 1))
	assert.ErrorIs(t, err, envelope.ErrKeyDestroyed)
	assert.True(t, z.has(v1), "destroyed elsewhere: zeroed here at once")
	sk, err := app.SearchKEKs(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), sk[0].Ref().Version)
}

// TestStateNeverOlderThanMaxStateAge: KEK material rides out a store
// outage only until MaxStateAge: no lookup uses a scope state older than
// that; lookups then fail fast until the store answers.
func TestStateNeverOlderThanMaxStateAge(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	fs := &flakyStore{Store: e.store}
	app, _ := e.processOn(testConfig(), fs)
	s := envelope.Scope{Class: envelope.High}
	_, err = app.PrimaryKEK(ctx, s)
	require.NoError(t, err)
	kmsCalls := app.Stats().KMSCalls()
	fs.set(true)
	for elapsed := DefaultStateRefresh; elapsed < MaxStateAge; elapsed += DefaultStateRefresh {
		e.clock.Advance(DefaultStateRefresh)
		_, err = app.PrimaryKEK(ctx, s)
		require.NoError(t, err, "store down for %v, less than MaxStateAge", elapsed)
		app.settle()
	}
	e.clock.Advance(DefaultStateRefresh) // the state is MaxStateAge old
	fs.set(true)                         // count the reads from here
	for _, call := range []func() error{
		func() error { _, err := app.PrimaryKEK(ctx, s); return err },
		func() error { _, err := app.KEK(ctx, ref(envelope.High, "", 1)); return err },
		func() error { _, err := app.SearchKEKs(ctx, s); return err },
	} {
		err := call()
		assert.ErrorIs(t, err, envelope.ErrKeyUnavailable)
		assert.ErrorIs(t, err, ErrStore)
		assert.Contains(t, err.Error(), "high")
	}
	assert.EqualValues(t, 1, fs.loads(), "failures are remembered: one store read for three lookups")
	fs.set(false)
	e.clock.Advance(time.Second) // past the failure backoff
	_, err = app.PrimaryKEK(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, kmsCalls, app.Stats().KMSCalls(), "the KEK material stayed cached")
}

// flakyStore can simulate the database being down.
type flakyStore struct {
	Store
	down   bool
	failed int64 // reads refused while down
	mu     sync.Mutex
}

func (f *flakyStore) set(down bool) { f.mu.Lock(); f.down, f.failed = down, 0; f.mu.Unlock() }

func (f *flakyStore) loads() int64 { f.mu.Lock(); defer f.mu.Unlock(); return f.failed }

func (f *flakyStore) LoadScope(ctx context.Context, s envelope.Scope) (*ScopeState, error) {
	f.mu.Lock()
	down := f.down
	if down {
		f.failed++
	}
	f.mu.Unlock()
	if down {
		return nil, ErrStore
	}
	return f.Store.LoadScope(ctx, s)
}

// TestCallerCancellation: a caller giving up does not fail the others
// sharing its KMS call.
func TestCallerCancellation(t *testing.T) {
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	app, keys := e.process(testConfig())
	gate := make(chan struct{})
	keys[uriModerate].mu.Lock()
	keys[uriModerate].gate = gate // the KMS answers only when the test says so
	keys[uriModerate].mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { _, err := app.KEK(cctx, ref(envelope.Moderate, "", 1)); done <- err }()
	require.Eventually(t, func() bool { return keys[uriModerate].unwraps.Load() >= 1 }, 10*time.Second, time.Millisecond)
	go func() { _, err := app.KEK(ctx, ref(envelope.Moderate, "", 1)); done <- err }()
	cancel()
	err1 := <-done // the KMS has not answered: only the cancelled caller can return
	close(gate)
	err2 := <-done
	assert.ErrorIs(t, err1, context.Canceled)
	assert.NoError(t, err2)
	assert.Equal(t, 1, keys[uriModerate].unwrapsOf(envelope.Moderate, "", 1))
	assert.EqualValues(t, 2, keys[uriModerate].unwraps.Load(), "the KEK and the class key, once each")
}

func TestClose(t *testing.T) {
	e := newEnv(t, nil)
	kr, _ := e.process(testConfig())
	z := watchZero(kr)
	_, err := kr.Init(ctx)
	require.NoError(t, err)
	require.NoError(t, kr.Close())
	assert.Equal(t, 4, z.count())
	_, err = kr.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Low})
	assert.ErrorIs(t, err, ErrClosed)
	require.NoError(t, kr.Close())
}

// TestMillionValuesThroughEnvelope seals and opens 1,000,000 values with
// the real envelope over the four encrypted classes (one of them with a
// tenant), with a rotation half-way: 8 KMS calls, whatever the number of
// values: 3 KEK unwraps and 4 class-key unwraps before the rotation (the
// tenant's KEK is unwrapped under its class key, locally), plus one wrap
// for the rotated class.
func TestMillionValuesThroughEnvelope(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	e := newEnv(t, nil)
	admin, _ := e.process(testConfig())
	_, err := admin.Init(ctx)
	require.NoError(t, err)
	_, err = admin.EnsureScope(ctx, envelope.Scope{Class: envelope.High, Tenant: "acme"})
	require.NoError(t, err)

	app, keys := e.process(testConfig())
	env := envelope.New(app)
	bindings := []envelope.Binding{
		{Class: envelope.Critical, Table: "users", Column: "ssn"},
		{Class: envelope.High, Tenant: "acme", Table: "users", Column: "email"},
		{Class: envelope.Moderate, Table: "orders", Column: "address"},
		{Class: envelope.Low, Table: "orders", Column: "note"},
	}
	value := []byte("4111 1111 1111 1111")
	var early [4][]byte // ciphertexts sealed before the rotation
	start := time.Now()
	for i := 0; i < n; i++ {
		b := bindings[i%4]
		if i == n/2 {
			_, err := app.Rotate(ctx, bindings[0].Scope()) // one wrap
			require.NoError(t, err)
		}
		b.Row = "row"
		ct, err := env.Seal(ctx, b, value)
		if err != nil {
			t.Fatalf("seal %d: %v", i, err)
		}
		if i < 4 {
			early[i] = ct
		}
		pt, err := env.Open(ctx, b, ct)
		if err != nil || string(pt) != string(value) {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	for i, ct := range early { // old values still open after the rotation
		b := bindings[i]
		b.Row = "row"
		_, err := env.Open(ctx, b, ct)
		require.NoError(t, err)
	}
	elapsed := time.Since(start)
	calls := sum(keys, wraps) + sum(keys, unwraps)
	assert.LessOrEqual(t, calls, int64(8))
	assert.EqualValues(t, 7, sum(keys, unwraps))
	assert.EqualValues(t, 1, sum(keys, wraps))
	assert.EqualValues(t, 1, app.Stats().ClassKeyUnwraps, "the tenant KEK")
	t.Logf("%d values sealed+opened through the envelope: %d KMS calls (%+v) in %v", n, calls, app.Stats(), elapsed)
}
