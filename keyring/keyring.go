package keyring

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	"golang.org/x/sync/singleflight"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/hooks"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Encryption context keys bound to every wrapped KEK, with the exact form
// of their values (the KMS sees them: AWS key policies condition on
// "kms:EncryptionContext:" + key). A KEK's context is
//
//	fieldcrypt:class        the class name, lower case: "critical"
//	fieldcrypt:kek-version  the version in decimal, no leading zero: "3"
//	fieldcrypt:keyring      the keyring id (Config.Name): "billing"
//	fieldcrypt:tenant       the tenant, only for a tenant's KEK: "acme"
//
// A class key's is fieldcrypt:class, fieldcrypt:keyring and ECPurpose =
// "class-key". docs/operations.md ("KMS key policies") gives policy
// examples, and the backup file key's context.
const (
	ECClass      = "fieldcrypt:class"
	ECTenant     = "fieldcrypt:tenant" // only when the scope has a tenant
	ECKEKVersion = "fieldcrypt:kek-version"
	ECKeyring    = "fieldcrypt:keyring"
)

// Keyring manages the KEKs of one keyring: it implements envelope.KeySource
// with a cache in front of the store and the KMS, and the lifecycle
// operations the CLI drives (Rotate, RewrapAll, Retire, Destroy, ...).
// It is safe for concurrent use. Call Close when done.
type Keyring struct {
	store         Store
	opener        kms.Opener
	uris          kms.URIValidator // checks master key URIs (the opener, or kms.DefaultRegistry)
	now           func() time.Time
	ttl           time.Duration
	maxAge        time.Duration
	refresh       time.Duration // Config.StateRefresh
	grace         time.Duration
	retry         time.Duration
	failBO        time.Duration
	opTO          time.Duration
	auto          bool
	allowUnsealed bool
	name          string
	scoped        map[envelope.Class]bool   // configured encrypted classes → tenant scoped
	access        map[envelope.Class]access // Config.Decrypt / EncryptOnly; nil: no limit

	cfgMu sync.RWMutex
	cfg   Config

	mkMu       sync.Mutex
	mks        map[string]*guardedKey
	ownKeys    bool          // close master keys at Close (false with WithMasterKeys: the caller's)
	probeAfter time.Duration // circuit breaker: first probe (0: no breaker)
	probeMax   time.Duration // circuit breaker: longest wait between probes

	mu              sync.RWMutex
	keks            map[envelope.KEKRef]*kekEntry
	scopes          map[envelope.Scope]*scopeEntry
	classKeys       map[envelope.Class]*classKeyEntry
	graves          []grave
	fails           map[envelope.KEKRef]failure  // recent unwrap failures, to fail fast
	scopeFails      map[envelope.Scope]failure   // recent failed state loads, to fail fast
	epochs          map[envelope.Scope]uint64    // highest epoch seen per scope (rollback detection)
	sealedClasses   map[envelope.Class]bool      // classes seen with a class key
	unsealedChecked map[envelope.Class]time.Time // when an unsealed class was last checked for sealed scopes
	unsealedWarned  map[envelope.Scope]bool      // unsealed scopes already audited

	sf      singleflight.Group
	life    context.Context    // cancelled by Close: every background call runs under it
	stop    context.CancelFunc // cancels life
	wg      sync.WaitGroup     // refreshes and shared loads in flight
	probers sync.WaitGroup     // circuit-breaker probe loops
	closed  atomic.Bool
	stats   counters
	audit   audit.Sink

	telSettings telemetry.Settings  // WithMeterProvider, WithTracerProvider, WithTenantLabels
	tel         *keyringTelemetry   // instruments, created in New
	onZero      func(*envelope.KEK) // test hook
}

type kekEntry struct {
	refresher
	kek      *envelope.KEK
	verified atomic.Int64   // unix nanos of the last successful unwrap (by the KMS)
	parent   *classKeyEntry // unwrapped through this class key: cached as long as it is, refreshed with it
}

type scopeEntry struct {
	refresher
	st      *ScopeState // verified; immutable once cached
	fetched time.Time   // when the read that returned st started
}

// refresher is the background-refresh bookkeeping of a cache entry.
type refresher struct {
	nextAttempt atomic.Int64 // unix nanos before which no refresh is tried
	refreshing  atomic.Bool
}

// refreshAsync runs refresh in the background, with the op timeout, unless
// one is running for the entry already or the last one failed too
// recently. refresh returns when to try again after a failure (zero after
// a success).
func (k *Keyring) refreshAsync(r *refresher, s envelope.Scope, now time.Time, refresh func(ctx context.Context) (retryAt time.Time)) {
	if now.UnixNano() < r.nextAttempt.Load() || !r.refreshing.CompareAndSwap(false, true) {
		return
	}
	if !k.spawn(func() {
		defer r.refreshing.Store(false)
		ctx, cancel := k.background()
		defer cancel()
		k.stats.refreshes.Add(1)
		ctx, span := k.tel.span(ctx, "fieldcrypt.kek.refresh", s)
		defer span.End()
		var next int64
		result := cacheRefresh
		if at := refresh(ctx); !at.IsZero() {
			k.stats.refreshErrors.Add(1)
			next = at.UnixNano()
			result = cacheRefreshFailed
			span.SetStatus(codes.Error, "refresh failed")
		}
		k.tel.cacheResult(ctx, s, result)
		r.nextAttempt.Store(next)
	}) {
		r.refreshing.Store(false)
	}
}

type failure struct {
	err   error
	until time.Time
}

// recentFailure returns the error remembered for key in fails, if it is
// still within the failure backoff.
func recentFailure[K comparable](k *Keyring, fails map[K]failure, key K, now time.Time) error {
	if k.failBO <= 0 {
		return nil
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if f, ok := fails[key]; ok && now.Before(f.until) {
		return f.err
	}
	return nil
}

type grave struct {
	kek *envelope.KEK
	at  time.Time
}

// Option configures a Keyring.
type Option func(*Keyring)

// WithOpener makes the keyring open master keys through o instead of
// kms.DefaultRegistry: typically a kms.Registry with explicitly configured
// openers. When o is a kms.URIValidator (a Registry is), master key URIs
// are validated by it too. The keyring owns what o opens: Close closes the
// keys it opened.
func WithOpener(o kms.Opener) Option {
	return func(k *Keyring) { k.opener, k.ownKeys = o, true }
}

// WithMasterKeys makes the keyring use the given master keys, by URI,
// instead of opening them through the kms registry. They stay the
// caller's: Close does not close them.
func WithMasterKeys(keys ...kms.MasterKey) Option {
	m := map[string]kms.MasterKey{}
	for _, mk := range keys {
		m[mk.URI()] = mk
	}
	o := kms.OpenerFunc(func(_ context.Context, uri string) (kms.MasterKey, error) {
		if mk, ok := m[uri]; ok {
			return mk, nil
		}
		return nil, &kms.Error{Op: "open", URI: uri, Err: kms.ErrKeyNotFound}
	})
	return func(k *Keyring) { k.opener, k.ownKeys = o, false }
}

// withClock replaces time.Now. It is not part of the API: tests use it,
// and the CLI reaches it through internal/hooks.
func withClock(now func() time.Time) Option { return func(k *Keyring) { k.now = now } }

func init() {
	hooks.KeyringClock = func(now func() time.Time) any { return withClock(now) }
}

// WithEvictGrace sets how long an evicted KEK stays unzeroed so callers
// that obtained it just before eviction can finish (default 1 min).
func WithEvictGrace(d time.Duration) Option { return func(k *Keyring) { k.grace = d } }

// WithRefreshRetry sets how long to wait after a failed KEK refresh before
// trying again while serving stale entries (default 30 s). Scope states are
// retried at every lookup once StateRefresh has passed, since they may not
// be served past MaxStateAge.
func WithRefreshRetry(d time.Duration) Option { return func(k *Keyring) { k.retry = d } }

// WithFailureBackoff sets how long a failed unwrap (KMS unreachable, key
// revoked, with no servable cached copy) is remembered: lookups of that
// version fail fast with the same error instead of each waiting for the
// KMS (default 1 s; 0 disables).
func WithFailureBackoff(d time.Duration) Option { return func(k *Keyring) { k.failBO = d } }

// WithOpTimeout bounds each KMS call and store read made on behalf of
// lookups (default 30 s). Lookups share these calls, so one caller's
// cancellation never fails the others.
func WithOpTimeout(d time.Duration) Option { return func(k *Keyring) { k.opTO = d } }

// WithoutAutoCreate stops PrimaryKEK and SearchKEKs from creating version
// 1 of a scope that has no KEK yet (by default they do, so a new tenant
// needs no provisioning step); they then fail with envelope.ErrUnknownKey.
func WithoutAutoCreate() Option { return func(k *Keyring) { k.auto = false } }

// New validates cfg and returns a keyring over store. It contacts neither
// the KMS nor the store: master keys are opened and KEKs unwrapped on
// first use.
func New(cfg Config, store Store, opts ...Option) (*Keyring, error) {
	k := &Keyring{
		store:           store,
		opener:          kms.DefaultRegistry,
		ownKeys:         true,
		probeAfter:      DefaultProbeAfter,
		probeMax:        DefaultMaxProbe,
		now:             time.Now,
		ttl:             cfg.ttl(),
		maxAge:          cfg.maxAge(),
		refresh:         cfg.stateRefresh(),
		grace:           time.Minute,
		failBO:          time.Second,
		retry:           30 * time.Second,
		opTO:            30 * time.Second,
		auto:            true,
		allowUnsealed:   cfg.AllowUnsealedStore,
		name:            cfg.Name,
		scoped:          map[envelope.Class]bool{},
		access:          cfg.access(),
		cfg:             cfg.clone(),
		mks:             map[string]*guardedKey{},
		keks:            map[envelope.KEKRef]*kekEntry{},
		fails:           map[envelope.KEKRef]failure{},
		scopes:          map[envelope.Scope]*scopeEntry{},
		classKeys:       map[envelope.Class]*classKeyEntry{},
		scopeFails:      map[envelope.Scope]failure{},
		epochs:          map[envelope.Scope]uint64{},
		sealedClasses:   map[envelope.Class]bool{},
		unsealedChecked: map[envelope.Class]time.Time{},
		unsealedWarned:  map[envelope.Scope]bool{},
	}
	for n, cc := range cfg.Classes {
		c, _ := envelope.ParseClass(n)
		if c.Encrypted() {
			k.scoped[c] = cc.TenantScoped
		}
	}
	for _, o := range opts {
		o(k)
	}
	k.tel = newKeyringTelemetry(k.telSettings)
	var ok bool
	if k.uris, ok = k.opener.(kms.URIValidator); !ok {
		k.uris = kms.DefaultRegistry
	}
	if err := cfg.validate(k.uris); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, configErr("nil store")
	}
	k.life, k.stop = context.WithCancel(context.Background())
	return k, nil
}

// Config returns a copy of the keyring's current configuration. It differs
// from the one given to New after RewrapAll.
func (k *Keyring) Config() Config {
	k.cfgMu.RLock()
	defer k.cfgMu.RUnlock()
	return k.cfg.clone()
}

func (k *Keyring) classURI(c envelope.Class) string {
	k.cfgMu.RLock()
	defer k.cfgMu.RUnlock()
	return k.cfg.Classes[c.String()].MasterKey
}

// scope checks a scope: the class must be configured and encrypted, and
// the tenant empty unless the class is tenant-scoped. (The envelope
// requires the KEK it gets to carry the binding's exact scope, so a tenant
// cannot silently fall back to the class-wide KEKs.)
func (k *Keyring) scope(op string, s envelope.Scope) (envelope.Scope, error) {
	scoped, ok := k.scoped[s.Class]
	if !ok {
		if !s.Class.Encrypted() {
			return s, scopeErr(op, s, "", "class has no keys", envelope.ErrInvalidInput)
		}
		return s, scopeErr(op, s, "", "class not configured in keyring "+strconv.Quote(k.name), envelope.ErrUnknownKey)
	}
	if !scoped && s.Tenant != "" {
		return s, scopeErr(op, s, "", "class "+s.Class.String()+" is not tenant-scoped in keyring "+strconv.Quote(k.name)+
			" (use tenant \"\" or set tenant_scoped)", envelope.ErrInvalidInput)
	}
	return s, nil
}

func (k *Keyring) ec(ref envelope.KEKRef) kms.EncryptionContext {
	ec := kms.EncryptionContext{
		ECClass:      ref.Class.String(),
		ECKEKVersion: strconv.FormatUint(uint64(ref.Version), 10),
		ECKeyring:    k.name,
	}
	if ref.Tenant != "" {
		ec[ECTenant] = ref.Tenant
	}
	return ec
}

// masterKey returns the master key uri names, opened once, behind its
// circuit breaker.
func (k *Keyring) masterKey(ctx context.Context, uri string) (*guardedKey, error) {
	k.mkMu.Lock()
	g, ok := k.mks[uri]
	k.mkMu.Unlock()
	if ok {
		return g, nil
	}
	mk, err := k.opener.OpenMasterKey(ctx, uri)
	if err != nil {
		return nil, err
	}
	k.mkMu.Lock()
	defer k.mkMu.Unlock()
	if prev, ok := k.mks[uri]; ok {
		k.discard(mk) // opened twice concurrently
		return prev, nil
	}
	if k.closed.Load() {
		k.discard(mk)
		return nil, &kms.Error{Op: "open", URI: uri, Err: fmt.Errorf("%w: %w", kms.ErrUnavailable, ErrClosed)}
	}
	g = k.guard(mk)
	k.mks[uri] = g
	return g, nil
}

// discard closes a master key the keyring opened but will not use.
func (k *Keyring) discard(mk kms.MasterKey) {
	if c, ok := mk.(io.Closer); ok && k.ownKeys {
		_ = c.Close()
	}
}

// newKEK generates a KEK for ref and wraps it: a tenant KEK of a sealed
// class under the class key (no KMS call), any other under the master key
// uri. It returns the KEK and its record (version, wrapping, master key,
// wrapped key; the caller sets state and times). It never loads the class
// key (it runs inside store transactions): the caller made sure it is
// cached (update seals with it); without it, the KMS wraps.
func (k *Keyring) newKEK(ctx context.Context, ref envelope.KEKRef, uri string) (*envelope.KEK, Record, error) {
	raw := make([]byte, envelope.KEKSize)
	defer clear(raw)
	if _, err := rand.Read(raw); err != nil {
		return nil, Record{}, keyErr("generate", ref, uri, "crypto/rand failed", err)
	}
	rec := Record{Version: ref.Version}
	var err error
	if ck := k.cachedClassKey(ref.Class); ref.Tenant != "" && ck != nil {
		rec.WrappedBy = WrapClassKey
		rec.Wrapped, err = k.wrapWithClassKey(ck, ref, raw)
	} else {
		rec.MasterKeyURI = uri
		rec.Wrapped, err = k.wrap(ctx, ref, uri, raw)
	}
	if err != nil {
		return nil, Record{}, err
	}
	kek, err := envelope.NewKEK(ref, raw)
	if err != nil {
		return nil, Record{}, keyErr("generate", ref, uri, "", err)
	}
	return kek, rec, nil
}

func (k *Keyring) wrap(ctx context.Context, ref envelope.KEKRef, uri string, raw []byte) ([]byte, error) {
	wrapped, step, err := k.wrapUnder(ctx, uri, raw, k.ec(ref))
	if err != nil {
		return nil, keyErr("wrap", ref, uri, step, envelope.ErrKeyUnavailable, err)
	}
	return wrapped, nil
}

// wrapUnder wraps raw under the master key uri, bound to ec. On failure it
// returns the step that failed ("open master key", or "" for the wrap)
// and the cause, for the caller to name the key concerned.
func (k *Keyring) wrapUnder(ctx context.Context, uri string, raw []byte, ec kms.EncryptionContext) ([]byte, string, error) {
	mk, err := k.masterKey(ctx, uri)
	if err != nil {
		return nil, "open master key", err
	}
	wrapped, err := mk.Wrap(ctx, raw, ec)
	if err != nil {
		k.stats.wrapErrors.Add(1)
		return nil, "", err
	}
	return wrapped, "", nil
}

// rewrapKey unwraps a key (unwrap), wraps the plaintext again (wrap) and
// clears it.
func rewrapKey(unwrap func() ([]byte, error), wrap func([]byte) ([]byte, error)) ([]byte, error) {
	raw, err := unwrap()
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return wrap(raw)
}

// unwrap returns the plaintext KEK of rec, wrapped by the master key, from
// the KMS; the caller must clear it. (unwrapKEK takes either wrapping.)
func (k *Keyring) unwrap(ctx context.Context, ref envelope.KEKRef, rec *Record) ([]byte, error) {
	if rec.WrappedBy != WrapMasterKey {
		return nil, keyErr("unwrap", ref, "", "not wrapped by a master key", envelope.ErrKeyUnavailable, ErrStore)
	}
	return k.unwrapUnder(ctx, "unwrap", ref, rec.MasterKeyURI, rec.Wrapped, k.ec(ref), envelope.KEKSize, "")
}

// unwrapUnder unwraps wrapped under the master key uri and checks that it
// holds size bytes; the caller must clear them. uri only selects among the
// master keys the configuration lists for ref's class: any other is
// refused and audited, without asking the KMS. ref names the key in
// errors and events (version 0: the class key). With tamperReason, an
// authentication failure or a wrong size is tampering: reported with it,
// as ErrTampered, and audited.
func (k *Keyring) unwrapUnder(ctx context.Context, op string, ref envelope.KEKRef, uri string, wrapped []byte, ec kms.EncryptionContext, size int, tamperReason string) ([]byte, error) {
	tamper := func(errs ...error) error {
		err := keyErr(op, ref, uri, tamperReason, append([]error{envelope.ErrKeyUnavailable, ErrTampered}, errs...)...)
		k.emitTamper(ctx, ref.Scope(), ref.Version, uri, err)
		return err
	}
	if !k.trusts(ref.Class, uri) {
		err := keyErr(op, ref, uri, k.untrustedReason(ref.Class, uri), envelope.ErrKeyUnavailable, ErrUntrustedKey)
		k.emitTamper(ctx, ref.Scope(), ref.Version, uri, err)
		return nil, err
	}
	mk, err := k.masterKey(ctx, uri)
	if err != nil {
		k.stats.unwrapErrors.Add(1)
		return nil, keyErr(op, ref, uri, "open master key", envelope.ErrKeyUnavailable, err)
	}
	raw, err := mk.Unwrap(ctx, wrapped, ec)
	if !errors.Is(err, ErrCircuitOpen) { // no event for a call that was not made
		var counts map[string]int64
		if ref.Version == 0 {
			counts = map[string]int64{"class_key": 1}
		}
		k.emit(ctx, audit.MasterKeyUnwrap, ref, uri, err, counts)
	}
	if err != nil {
		k.stats.unwrapErrors.Add(1)
		if tamperReason != "" && errors.Is(err, kms.ErrAuthentication) {
			return nil, tamper(err)
		}
		return nil, keyErr(op, ref, uri, "", envelope.ErrKeyUnavailable, err)
	}
	if len(raw) != size {
		clear(raw)
		k.stats.unwrapErrors.Add(1)
		problem := fmt.Errorf("%w: unwrapped key has %d bytes, want %d", ErrStore, len(raw), size)
		if tamperReason != "" {
			return nil, tamper(problem)
		}
		return nil, keyErr(op, ref, uri, "", envelope.ErrKeyUnavailable, problem)
	}
	return raw, nil
}

// uriOwner returns the configured class that lists uri as a master key
// (current or previous), or 0.
func (k *Keyring) uriOwner(uri string) envelope.Class {
	k.cfgMu.RLock()
	defer k.cfgMu.RUnlock()
	for n, cc := range k.cfg.Classes {
		if cc.trusts(uri) {
			c, _ := envelope.ParseClass(n)
			return c
		}
	}
	return 0
}

// definitive reports whether a KMS error is an answer (revocation) rather
// than an outage: such errors evict cached keys instead of being ridden
// out until MaxAge.
func definitive(err error) bool {
	return errors.Is(err, kms.ErrAccessDenied) || errors.Is(err, kms.ErrKeyDisabled) ||
		errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrAuthentication)
}

// zero destroys a KEK (envelope.KEK.Destroy: key bytes zeroed, later use
// fails). Every zeroing by the keyring goes through here.
func (k *Keyring) zero(kek *envelope.KEK) {
	if k.onZero != nil {
		k.onZero(kek)
	}
	kek.Destroy()
}
