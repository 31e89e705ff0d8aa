package keyring

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// ECPurpose is the encryption-context key naming what a wrapped key is
// for. Class keys are wrapped with ECPurpose = "class-key" (and ECKeyring,
// ECClass); KEKs carry no purpose but a version, so neither can be
// unwrapped as the other.
const ECPurpose = "fieldcrypt:purpose"

const (
	purposeClassKey = "class-key"
	classKeySize    = 32
	// macInfo starts the HKDF info of the state MAC key, followed by the
	// length-prefixed keyring name and class.
	macInfo = "fieldcrypt/v1/keyring-state"
	// wrapRootInfo starts the HKDF info of the root that tenant KEKs'
	// wrapping keys are derived from (classwrap.go), followed by the
	// length-prefixed keyring name and class.
	wrapRootInfo = "fieldcrypt/v1/tenant-kek-wrap-root"
)

// errNoClassKey: the class has no class key (never sealed).
var errNoClassKey = errors.New("no class key")

// classKeyEntry caches what the keyring derives from a class key: the key
// that authenticates the class's scope states, and the root that wraps its
// tenant KEKs. It is refreshed like a KEK (CacheTTL, MaxAge), so a class
// costs one KMS unwrap per process per cache lifetime, whatever the number
// of its tenants. The class key itself is not kept.
type classKeyEntry struct {
	refresher
	macKey   []byte // HKDF(class key, macInfo || keyring || class); immutable
	verified atomic.Int64

	rootMu   sync.RWMutex
	wrapRoot []byte // HKDF(class key, wrapRootInfo || keyring || class); nil once zeroed

	mu  sync.Mutex
	src WrappedClassKey // the newest stored form seen, for refreshes
}

// zero clears the derived keys: the class key no longer unwraps tenant
// KEKs through this entry. The MAC key is cleared too (only Close zeroes a
// cached entry: a dropped one may still verify a state in flight).
func (e *classKeyEntry) zero() {
	e.zeroRoot()
	clear(e.macKey)
}

func (e *classKeyEntry) zeroRoot() {
	e.rootMu.Lock()
	defer e.rootMu.Unlock()
	clear(e.wrapRoot)
	e.wrapRoot = nil
}

func (e *classKeyEntry) source() WrappedClassKey {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.src
}

func (e *classKeyEntry) setSource(ck *WrappedClassKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.src = *ck
}

func (k *Keyring) classKeyEC(c envelope.Class) kms.EncryptionContext {
	return kms.EncryptionContext{ECKeyring: k.name, ECClass: c.String(), ECPurpose: purposeClassKey}
}

// deriveClassKeys derives from a class key the state MAC key of class c
// (HKDF-SHA256 with info "fieldcrypt/v1/keyring-state" || len || keyring
// name || len || class, 4-byte big-endian lengths) and the tenant KEK
// wrapping root (same, with info "fieldcrypt/v1/tenant-kek-wrap-root"),
// into an entry not cached yet.
func (k *Keyring) deriveClassKeys(classKey []byte, c envelope.Class, src *WrappedClassKey) (*classKeyEntry, error) {
	derive := func(label string) ([]byte, error) {
		info := appendString([]byte(label), k.name)
		info = appendString(info, c.String())
		return hkdf.Key(sha256.New, classKey, nil, string(info), sha256.Size)
	}
	macKey, err := derive(macInfo)
	if err != nil {
		return nil, scopeErr("derive class keys", envelope.Scope{Class: c}, src.MasterKeyURI, "derive MAC key", envelope.ErrKeyUnavailable, err)
	}
	root, err := derive(wrapRootInfo)
	if err != nil {
		return nil, scopeErr("derive class keys", envelope.Scope{Class: c}, src.MasterKeyURI, "derive wrapping root", envelope.ErrKeyUnavailable, err)
	}
	return &classKeyEntry{macKey: macKey, wrapRoot: root, src: *src}, nil
}

// newClassKey generates a class key for c, wraps it under the class's
// master key, and returns the stored form and the entry derived from it.
func (k *Keyring) newClassKey(ctx context.Context, c envelope.Class) (*WrappedClassKey, *classKeyEntry, error) {
	uri := k.classURI(c)
	raw := make([]byte, classKeySize)
	defer clear(raw)
	if _, err := rand.Read(raw); err != nil {
		return nil, nil, scopeErr("generate class key", envelope.Scope{Class: c}, uri, "crypto/rand failed", err)
	}
	wrapped, err := k.wrapClassKey(ctx, c, uri, raw)
	if err != nil {
		return nil, nil, err
	}
	ck := &WrappedClassKey{MasterKeyURI: uri, Wrapped: wrapped, CreatedAt: k.stamp()}
	e, err := k.deriveClassKeys(raw, c, ck)
	if err != nil {
		return nil, nil, err
	}
	return ck, e, nil
}

func (k *Keyring) wrapClassKey(ctx context.Context, c envelope.Class, uri string, raw []byte) ([]byte, error) {
	wrapped, step, err := k.wrapUnder(ctx, uri, raw, k.classKeyEC(c))
	if err != nil {
		return nil, scopeErr("wrap class key", envelope.Scope{Class: c}, uri, step, envelope.ErrKeyUnavailable, err)
	}
	return wrapped, nil
}

// unwrapClassKey returns the plaintext class key of ck; the caller must
// clear it. A master key the configuration does not trust, or a wrapped
// key that fails authentication, is tampering: refused and audited.
func (k *Keyring) unwrapClassKey(ctx context.Context, c envelope.Class, ck *WrappedClassKey) ([]byte, error) {
	return k.unwrapUnder(ctx, "unwrap class key", envelope.KEKRef{Class: c}, ck.MasterKeyURI, ck.Wrapped, k.classKeyEC(c), classKeySize,
		"the stored class key does not unwrap under this class's master key and keyring name: it was replaced, moved from another class or keyring, or corrupted")
}

// unwrapClassKeyEntry unwraps ck and derives the entry from it.
func (k *Keyring) unwrapClassKeyEntry(ctx context.Context, c envelope.Class, ck *WrappedClassKey) (*classKeyEntry, error) {
	raw, err := k.unwrapClassKey(ctx, c, ck)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	return k.deriveClassKeys(raw, c, ck)
}

// classMAC returns the state MAC key of class c (see classKey).
func (k *Keyring) classMAC(ctx context.Context, c envelope.Class, home *ScopeState) ([]byte, error) {
	e, err := k.classKey(ctx, c, home)
	if err != nil {
		return nil, err
	}
	return e.macKey, nil
}

// classKey returns the class key entry of class c, from the cache or by
// unwrapping the class key once for every concurrent caller. home is the
// class-wide scope's state when the caller has it (its class key is used
// then, without a store read); otherwise the class key is read from the
// store. It returns errNoClassKey when the class has none.
func (k *Keyring) classKey(ctx context.Context, c envelope.Class, home *ScopeState) (*classKeyEntry, error) {
	now := k.now()
	k.mu.RLock()
	e := k.classKeys[c]
	k.mu.RUnlock()
	if e != nil {
		if home != nil && home.ClassKey != nil {
			e.setSource(home.ClassKey)
		}
		age := time.Duration(now.UnixNano() - e.verified.Load())
		if age < k.ttl {
			return e, nil
		}
		if age < k.maxAge {
			k.refreshClassKeyAsync(c, e, now)
			return e, nil
		}
	}
	if home != nil && home.ClassKey == nil {
		return nil, errNoClassKey
	}
	v, err := k.shared(ctx, "classkey:"+c.String(), func(err error) error {
		return scopeErr("lookup", envelope.Scope{Class: c}, k.classURI(c), "class key", envelope.ErrKeyUnavailable, err)
	}, func(dctx context.Context) (any, error) {
		ck := (*WrappedClassKey)(nil)
		if home != nil {
			ck = home.ClassKey
		} else {
			k.stats.storeReads.Add(1)
			st, err := k.store.LoadScope(dctx, envelope.Scope{Class: c})
			if err != nil {
				return nil, scopeErr("lookup", envelope.Scope{Class: c}, k.classURI(c), "read class key", envelope.ErrKeyUnavailable, err)
			}
			ck = st.ClassKey
		}
		if ck == nil {
			return nil, errNoClassKey
		}
		fresh, err := k.unwrapClassKeyEntry(dctx, c, ck)
		if err != nil {
			if e != nil && definitive(err) {
				k.dropClassKey(c, e)
			}
			return nil, err
		}
		k.putClassKey(c, fresh)
		return fresh, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*classKeyEntry), nil
}

// putClassKey caches e (just unwrapped or created) as class c's entry.
func (k *Keyring) putClassKey(c envelope.Class, e *classKeyEntry) {
	e.verified.Store(k.now().UnixNano())
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed.Load() {
		e.zero()
		return
	}
	if old := k.classKeys[c]; old != nil && old != e {
		k.retireClassKeyLocked(c, old, false)
	}
	k.classKeys[c] = e
}

// dropClassKey forgets a class key the KMS no longer unwraps (revoked): the
// tenant KEKs unwrapped through it leave the cache with it, and its
// wrapping root is zeroed, so revoking the master key reaches every tenant
// of the class within CacheTTL. The MAC key is not zeroed (a concurrent
// verification may still read it): it authenticates metadata and protects
// no value; Close zeroes every cached one.
func (k *Keyring) dropClassKey(c envelope.Class, e *classKeyEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.classKeys[c] == e {
		delete(k.classKeys, c)
	}
	k.retireClassKeyLocked(c, e, true)
}

// retireClassKeyLocked evicts the KEKs unwrapped through e (zeroed after
// the evict grace) and, when revoked, zeroes e's wrapping root.
func (k *Keyring) retireClassKeyLocked(c envelope.Class, e *classKeyEntry, revoked bool) {
	now := k.now()
	for ref, ke := range k.keks {
		if ke.parent == e {
			k.evictLocked(ref, ke, false, now)
		}
	}
	if revoked {
		e.zeroRoot()
	}
}

// refreshClassKeyAsync unwraps a class key past CacheTTL again in the
// background, to see a revocation; on a definitive refusal (or a class
// key no longer trusted) the entry is dropped, with the tenant KEKs
// unwrapped through it.
func (k *Keyring) refreshClassKeyAsync(c envelope.Class, e *classKeyEntry, now time.Time) {
	k.refreshAsync(&e.refresher, envelope.Scope{Class: c}, now, func(ctx context.Context) time.Time {
		src := e.source()
		raw, err := k.unwrapClassKey(ctx, c, &src)
		if err != nil {
			if definitive(err) || errors.Is(err, ErrTampered) || errors.Is(err, ErrUntrustedKey) {
				k.dropClassKey(c, e)
			}
			return k.now().Add(k.retry)
		}
		clear(raw)
		e.verified.Store(k.now().UnixNano())
		return time.Time{}
	})
}

// sealingKey returns the state MAC key of class c for a write, creating
// the class key if the class has nothing stored yet (a new keyring is
// sealed from its first write). It returns nil, nil for a class whose
// stored scopes predate sealing: verify then decides whether the
// configuration allows using them.
func (k *Keyring) sealingKey(ctx context.Context, c envelope.Class) ([]byte, error) {
	macKey, err := k.classMAC(ctx, c, nil)
	if !errors.Is(err, errNoClassKey) {
		return macKey, err
	}
	home, fresh, err := k.classFresh(ctx, c)
	switch {
	case err != nil:
		return nil, err
	case home != nil && home.ClassKey != nil: // created since we looked
		return k.classMAC(ctx, c, home)
	case fresh:
		return k.createClassKey(ctx, c)
	}
	return nil, nil
}

// classFresh reports whether nothing of class c is stored yet, and returns
// the class-wide scope's state if it is stored.
func (k *Keyring) classFresh(ctx context.Context, c envelope.Class) (*ScopeState, bool, error) {
	k.stats.storeReads.Add(1)
	all, err := k.store.ListScopes(ctx)
	if err != nil {
		return nil, false, scopeErr("seal", envelope.Scope{Class: c}, k.classURI(c), "list scopes", envelope.ErrKeyUnavailable, err)
	}
	var home *ScopeState
	fresh := true
	for _, st := range all {
		if st.Scope.Class != c {
			continue
		}
		if st.Scope.Tenant == "" {
			home = st
		}
		fresh = fresh && st.empty()
	}
	return home, fresh, nil
}

// createClassKey stores a new class key in the (empty) class-wide scope of
// c and seals that scope (epoch 1). If another process created one first,
// that one is used.
func (k *Keyring) createClassKey(ctx context.Context, c envelope.Class) ([]byte, error) {
	home := envelope.Scope{Class: c}
	var macKey []byte
	var created *classKeyEntry
	err := k.store.UpdateScope(ctx, home, func(st *ScopeState) error {
		macKey, created = nil, nil
		if st.ClassKey != nil { // created meanwhile
			m, err := k.classMAC(ctx, c, st)
			macKey = m
			return err
		}
		if !st.empty() {
			return scopeErr("seal", home, k.classURI(c), "the class-wide scope was written meanwhile without a class key", envelope.ErrKeyUnavailable, ErrUnsealed)
		}
		ck, e, err := k.newClassKey(ctx, c)
		if err != nil {
			return err
		}
		created, macKey = e, e.macKey
		st.ClassKey = ck
		st.Epoch = 1
		st.MAC = k.stateMAC(macKey, st)
		return nil
	})
	if err != nil {
		return nil, k.opErr("seal", home, "", err)
	}
	if created != nil {
		k.putClassKey(c, created)
	}
	return macKey, nil
}
