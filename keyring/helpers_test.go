package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// memKey is an in-memory AES-256-GCM master key. Wrap output is
// nonce||ciphertext, the encryption context (canonical form) is the AAD.
// It counts calls per operation and per KEK (class/tenant/version from
// the context), and can simulate a KMS outage or a revocation.
type memKey struct {
	uri  string
	aead cipher.AEAD

	wraps, unwraps atomic.Int64
	mode           atomic.Int32 // modeUp, modeDown, ...
	closes         atomic.Int32

	mu        sync.Mutex
	perKEK    map[string]int // unwraps per "class/tenant/version"
	contexts  []kms.EncryptionContext
	unwrapDel time.Duration // artificial latency, widens races
	gate      chan struct{} // when set, unwraps wait for it to close
}

const (
	modeUp = iota
	modeDown
	modeDenied
	modeHang // no answer until the caller's context ends
)

func newMemKey(t testing.TB, uri string) *memKey {
	t.Helper()
	raw := make([]byte, 32)
	_, err := rand.Read(raw)
	require.NoError(t, err)
	return memKeyFrom(t, uri, raw)
}

// memKeyFrom builds a key from given bytes: two "processes" share a master
// key by building two memKeys from the same bytes.
func memKeyFrom(t testing.TB, uri string, raw []byte) *memKey {
	t.Helper()
	b, err := aes.NewCipher(raw)
	require.NoError(t, err)
	g, err := cipher.NewGCM(b)
	require.NoError(t, err)
	return &memKey{uri: uri, aead: g, perKEK: map[string]int{}}
}

func (m *memKey) URI() string { return m.uri }

func (m *memKey) Close() error {
	m.closes.Add(1)
	return nil
}

func (m *memKey) fail(ctx context.Context, op string) error {
	switch m.mode.Load() {
	case modeHang:
		<-ctx.Done()
		return &kms.Error{Op: op, URI: m.uri, Err: fmt.Errorf("%w: %w", kms.ErrUnavailable, ctx.Err())}
	case modeDown:
		return &kms.Error{Op: op, URI: m.uri, Err: fmt.Errorf("%w: connection refused", kms.ErrUnavailable)}
	case modeDenied:
		return &kms.Error{Op: op, URI: m.uri, Err: kms.ErrAccessDenied}
	}
	return nil
}

func ecKey(ec kms.EncryptionContext) string {
	return ec[ECClass] + "/" + ec[ECTenant] + "/" + ec[ECKEKVersion]
}

func (m *memKey) Wrap(ctx context.Context, key []byte, ec kms.EncryptionContext) ([]byte, error) {
	m.wraps.Add(1)
	if err := m.fail(ctx, "wrap"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.contexts = append(m.contexts, ec)
	m.mu.Unlock()
	nonce := make([]byte, m.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return m.aead.Seal(nonce, nonce, key, ec.Canonical()), nil
}

func (m *memKey) Unwrap(ctx context.Context, wrapped []byte, ec kms.EncryptionContext) ([]byte, error) {
	m.unwraps.Add(1)
	m.mu.Lock()
	m.perKEK[ecKey(ec)]++
	d, gate := m.unwrapDel, m.gate
	m.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
	if gate != nil {
		<-gate
	}
	if err := m.fail(ctx, "unwrap"); err != nil {
		return nil, err
	}
	n := m.aead.NonceSize()
	if len(wrapped) < n {
		return nil, &kms.Error{Op: "unwrap", URI: m.uri, Err: kms.ErrAuthentication}
	}
	out, err := m.aead.Open(nil, wrapped[:n], wrapped[n:], ec.Canonical())
	if err != nil {
		return nil, &kms.Error{Op: "unwrap", URI: m.uri, Err: kms.ErrAuthentication}
	}
	return out, nil
}

func (m *memKey) unwrapsOf(class envelope.Class, tenant string, v uint32) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.perKEK[fmt.Sprintf("%s/%s/%d", class, tenant, v)]
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	uriCritical = "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/11111111-aaaa-bbbb-cccc-000000000001"
	uriHigh     = "gcp-kms://projects/p/locations/europe-west1/keyRings/fc/cryptoKeys/high"
	uriModerate = "local:///var/lib/fieldcrypt/moderate.key"
	uriLow      = "local:///var/lib/fieldcrypt/low.key"
)

func testConfig() Config {
	return Config{
		Name: "test-ring",
		Classes: map[string]ClassConfig{
			"critical": {MasterKey: uriCritical},
			"high":     {MasterKey: uriHigh, TenantScoped: true},
			"moderate": {MasterKey: uriModerate},
			"low":      {MasterKey: uriLow},
			"public":   {},
		},
	}
}

// env is a test "deployment": master keys shared by every process.
type env struct {
	t     testing.TB
	raw   map[string][]byte
	clock *fakeClock
	store Store
}

func newEnv(t testing.TB, store Store) *env {
	e := &env{t: t, raw: map[string][]byte{}, clock: newClock(), store: store}
	if store == nil {
		e.store = NewFileStore(filepath.Join(t.TempDir(), "keks.json"))
	}
	return e
}

// keys returns fresh memKeys (one "process's" view) for every URI named.
func (e *env) keys(uris ...string) map[string]*memKey {
	out := map[string]*memKey{}
	for _, u := range uris {
		raw, ok := e.raw[u]
		if !ok {
			raw = make([]byte, 32)
			_, _ = rand.Read(raw)
			e.raw[u] = raw
		}
		out[u] = memKeyFrom(e.t, u, raw)
	}
	return out
}

// process opens a keyring as a new process would: its own cache and its
// own master key clients.
func (e *env) process(cfg Config, opts ...Option) (*Keyring, map[string]*memKey) {
	e.t.Helper()
	return e.processOn(cfg, e.store, opts...)
}

// processOn is process with a store handle of its own.
func (e *env) processOn(cfg Config, store Store, opts ...Option) (*Keyring, map[string]*memKey) {
	e.t.Helper()
	uris := []string{uriCritical, uriHigh, uriModerate, uriLow, uriNewCritical, uriNewHigh}
	keys := e.keys(uris...)
	var list []kms.MasterKey
	for _, k := range keys {
		list = append(list, k)
	}
	// Breakers probe on the real clock: quickly, so tests that bring the
	// KMS back do not wait.
	all := append([]Option{WithMasterKeys(list...), withClock(e.clock.Now), WithCircuitBreaker(2*time.Millisecond, 10*time.Millisecond)}, opts...)
	kr, err := New(cfg, store, all...)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = kr.Close() })
	return kr, keys
}

const (
	uriNewCritical = "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/11111111-aaaa-bbbb-cccc-000000000002"
	uriNewHigh     = "gcp-kms://projects/p/locations/europe-west1/keyRings/fc/cryptoKeys/high-2"
)

func sum(keys map[string]*memKey, f func(*memKey) int64) int64 {
	var n int64
	for _, k := range keys {
		n += f(k)
	}
	return n
}

func wraps(k *memKey) int64   { return k.wraps.Load() }
func unwraps(k *memKey) int64 { return k.unwraps.Load() }

// rotateWithSearch rotates s n times, moving its search key to each new
// primary (so that older versions may be retired or destroyed).
func rotateWithSearch(t testing.TB, kr *Keyring, s envelope.Scope, n int) {
	t.Helper()
	for range n {
		_, err := kr.Rotate(ctx, s)
		require.NoError(t, err)
		_, err = kr.RotateSearch(ctx, s)
		require.NoError(t, err)
		_, err = kr.FinishSearchRotation(ctx, s)
		require.NoError(t, err)
	}
}

// settle waits for background refreshes.
func (k *Keyring) settle() { k.wg.Wait() }

// waitBreakers waits until every circuit breaker of kr is closed: a probe
// reached the KMS since it came back.
func waitBreakers(t testing.TB, kr *Keyring) {
	t.Helper()
	require.Eventually(t, func() bool { return kr.Stats().OpenBreakers == 0 }, 10*time.Second, time.Millisecond, "a probe reaches the KMS")
}

var encryptedClasses = []envelope.Class{envelope.Critical, envelope.High, envelope.Moderate, envelope.Low}
