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
)

// errNoClassKey: the class has no class key (never sealed).
var errNoClassKey = errors.New("no class key")

// classKeyEntry caches what the keyring derives from a class key: the key
// that authenticates the class's scope states. It is refreshed like a KEK
// (CacheTTL, MaxAge), so sealing costs one KMS unwrap per class per
// process per cache lifetime.
type classKeyEntry struct {
	refresher
	macKey   []byte // HKDF(class key, macInfo || keyring || class); immutable
	verified atomic.Int64

	mu  sync.Mutex
	src WrappedClassKey // the newest stored form seen, for refreshes
}

// zero clears the derived keys (Close).
func (e *classKeyEntry) zero() { clear(e.macKey) }

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

// deriveMACKey derives the state MAC key of class c from its class key:
// HKDF-SHA256 with info "fieldcrypt/v1/keyring-state" || len || keyring
// name || len || class (4-byte big-endian lengths).
func (k *Keyring) deriveMACKey(classKey []byte, c envelope.Class) ([]byte, error) {
	info := appendString([]byte(macInfo), k.name)
	info = appendString(info, c.String())
	return hkdf.Key(sha256.New, classKey, nil, string(info), sha256.Size)
}

// newClassKey generates a class key for c, wraps it under the class's
// master key, and returns the stored form and the derived MAC key.
func (k *Keyring) newClassKey(ctx context.Context, c envelope.Class) (*WrappedClassKey, []byte, error) {
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
	macKey, err := k.deriveMACKey(raw, c)
	if err != nil {
		return nil, nil, scopeErr("generate class key", envelope.Scope{Class: c}, uri, "derive MAC key", err)
	}
	return &WrappedClassKey{MasterKeyURI: uri, Wrapped: wrapped, CreatedAt: k.stamp()}, macKey, nil
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

// unwrapMACKey unwraps ck and derives the MAC key from it.
func (k *Keyring) unwrapMACKey(ctx context.Context, c envelope.Class, ck *WrappedClassKey) ([]byte, error) {
	raw, err := k.unwrapClassKey(ctx, c, ck)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	macKey, err := k.deriveMACKey(raw, c)
	if err != nil {
		return nil, scopeErr("unwrap class key", envelope.Scope{Class: c}, ck.MasterKeyURI, "derive MAC key", envelope.ErrKeyUnavailable, err)
	}
	return macKey, nil
}

// classMAC returns the state MAC key of class c, from the cache or by
// unwrapping the class key once for every concurrent caller. home is the
// class-wide scope's state when the caller has it (its class key is used
// then, without a store read); otherwise the class key is read from the
// store. It returns errNoClassKey when the class has none.
func (k *Keyring) classMAC(ctx context.Context, c envelope.Class, home *ScopeState) ([]byte, error) {
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
			return e.macKey, nil
		}
		if age < k.maxAge {
			k.refreshClassKeyAsync(c, e, now)
			return e.macKey, nil
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
		macKey, err := k.unwrapMACKey(dctx, c, ck)
		if err != nil {
			if e != nil && definitive(err) {
				k.dropClassKey(c, e)
			}
			return nil, err
		}
		k.putClassKey(c, ck, macKey)
		return macKey, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

func (k *Keyring) putClassKey(c envelope.Class, ck *WrappedClassKey, macKey []byte) {
	e := &classKeyEntry{macKey: macKey, src: *ck}
	e.verified.Store(k.now().UnixNano())
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed.Load() {
		k.classKeys[c] = e
	}
}

// dropClassKey forgets a class key the KMS no longer unwraps. The MAC key
// is not zeroed here (a concurrent verification may still read it): it
// authenticates metadata and protects no value; Close zeroes every cached
// one.
func (k *Keyring) dropClassKey(c envelope.Class, e *classKeyEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.classKeys[c] == e {
		delete(k.classKeys, c)
	}
}

func (k *Keyring) refreshClassKeyAsync(c envelope.Class, e *classKeyEntry, now time.Time) {
	k.refreshAsync(&e.refresher, now, func(ctx context.Context) time.Time {
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
	var ck *WrappedClassKey
	err := k.store.UpdateScope(ctx, home, func(st *ScopeState) error {
		macKey, ck = nil, nil
		if st.ClassKey != nil { // created meanwhile
			m, err := k.classMAC(ctx, c, st)
			macKey = m
			return err
		}
		if !st.empty() {
			return scopeErr("seal", home, k.classURI(c), "the class-wide scope was written meanwhile without a class key", envelope.ErrKeyUnavailable, ErrUnsealed)
		}
		var err error
		if ck, macKey, err = k.newClassKey(ctx, c); err != nil {
			return err
		}
		st.ClassKey = ck
		st.Epoch = 1
		st.MAC = k.stateMAC(macKey, st)
		return nil
	})
	if err != nil {
		return nil, k.opErr("seal", home, "", err)
	}
	if ck != nil {
		k.putClassKey(c, ck, macKey)
	}
	return macKey, nil
}
