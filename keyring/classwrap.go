package keyring

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Tenant KEKs wrapped by the class key.
//
// A tenant-scoped class has one line of KEKs per tenant. Wrapped by the
// KMS, a cold process would make one KMS call per tenant (5,000 tenants:
// 5,000 calls at start and again every CacheTTL, per process): a cost and
// a rate quota that grow with customers. So a tenant KEK is wrapped by the
// class key instead, which the KMS protects and the keyring unwraps once
// per process per cache lifetime anyway (it authenticates the scope
// states): KMS calls then scale with classes and key versions, never with
// tenants. Class-wide KEKs (tenant "") stay wrapped by the KMS: there are
// only classes × versions of them, and the KMS keeps its per-version audit
// trail for the data of no tenant.
//
// Construction: AES-256-KWP (SP 800-38F; tink-go kwp/subtle, the wrap the
// envelope uses for data keys) under a key derived for the one KEK version
// it wraps:
//
//	root = HKDF-SHA256(class key, info = "fieldcrypt/v1/tenant-kek-wrap-root" || keyring || class)
//	key  = HKDF-SHA256(root, info = "fieldcrypt/v1/tenant-kek-wrap" || keyring || class || tenant || version)
//
// (strings length-prefixed, 4-byte big-endian; version 4 bytes). KWP takes
// no associated data, so the record's identity is bound by deriving the
// key from it: a wrapped KEK moved to another tenant, version, class or
// keyring does not unwrap. Each derived key wraps one 32-byte KEK, so KWP's
// bounds are never approached; there is no nonce to repeat (AES-GCM with a
// random nonce under one class-wide key would be limited to 2^32 wraps).
// The wrapped form is 40 bytes. Which wrapping a record uses
// (Record.WrappedBy) is covered by the state MAC.
//
// Crypto-shredding is unchanged: a tenant KEK is random, not derived, so
// deleting its wrapped form (ShredTenant, Destroy) destroys it; the class
// key cannot bring it back.

const (
	// tenantWrapInfo starts the HKDF info of the key that wraps one tenant
	// KEK version, followed by the length-prefixed keyring name, class and
	// tenant and the 4-byte version.
	tenantWrapInfo = "fieldcrypt/v1/tenant-kek-wrap"
	// classWrappedSize is the size of a KEK wrapped by the class key: KWP
	// adds 8 bytes to a 32-byte key.
	classWrappedSize = envelope.KEKSize + 8
)

// cachedClassKey returns class c's class key entry if it is cached and
// servable, without loading it (safe inside a store transaction).
func (k *Keyring) cachedClassKey(c envelope.Class) *classKeyEntry {
	k.mu.RLock()
	e := k.classKeys[c]
	k.mu.RUnlock()
	if e == nil || time.Duration(k.now().UnixNano()-e.verified.Load()) >= k.maxAge {
		return nil
	}
	return e
}

// unwrapKEK returns the plaintext KEK of rec, the caller must clear it;
// for a KEK wrapped by the class key, also the class key entry it was
// unwrapped through (the cached KEK lives no longer than that entry).
func (k *Keyring) unwrapKEK(ctx context.Context, ref envelope.KEKRef, rec *Record) ([]byte, *classKeyEntry, error) {
	if rec.WrappedBy != WrapClassKey {
		raw, err := k.unwrap(ctx, ref, rec)
		return raw, nil, err
	}
	e, err := k.classKey(ctx, ref.Class, nil)
	if errors.Is(err, errNoClassKey) {
		err = keyErr("unwrap", ref, "", "wrapped by the class key, but the class has none: the class key was deleted", envelope.ErrKeyUnavailable, ErrTampered)
		k.emitTamper(ctx, ref.Scope(), ref.Version, "", err)
	}
	if err != nil {
		return nil, nil, err
	}
	raw, err := k.unwrapWithClassKey(ctx, e, ref, rec)
	return raw, e, err
}

// errRevoked: the class key entry was dropped (its master key refused it)
// while a caller held it.
var errRevoked = errors.New("the class key was revoked (its master key refused to unwrap it)")

// kwpFor returns the KWP that wraps tenant KEK ref, keyed from e's root.
func (k *Keyring) kwpFor(e *classKeyEntry, ref envelope.KEKRef) (*subtle.KWP, error) {
	e.rootMu.RLock()
	defer e.rootMu.RUnlock()
	if e.wrapRoot == nil {
		return nil, errRevoked
	}
	info := appendString([]byte(tenantWrapInfo), k.name)
	info = appendString(info, ref.Class.String())
	info = appendString(info, ref.Tenant)
	info = binary.BigEndian.AppendUint32(info, ref.Version)
	key, err := hkdf.Key(sha256.New, e.wrapRoot, nil, string(info), 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return subtle.NewKWP(key)
}

// wrapWithClassKey wraps the plaintext KEK raw of ref under class key e.
func (k *Keyring) wrapWithClassKey(e *classKeyEntry, ref envelope.KEKRef, raw []byte) ([]byte, error) {
	w, err := k.kwpFor(e, ref)
	if err == nil {
		var wrapped []byte
		if wrapped, err = w.Wrap(raw); err == nil {
			return wrapped, nil
		}
	}
	return nil, keyErr("wrap", ref, "", "wrap under the class key", envelope.ErrKeyUnavailable, err)
}

// unwrapWithClassKey returns the plaintext KEK of rec (wrapped by the class
// key e); the caller must clear it. A wrapped key that does not unwrap is
// tampering (the state MAC covers it, so only a store that was changed
// together with its MAC, or a bug, gets here): refused and audited.
func (k *Keyring) unwrapWithClassKey(ctx context.Context, e *classKeyEntry, ref envelope.KEKRef, rec *Record) ([]byte, error) {
	w, err := k.kwpFor(e, ref)
	if err != nil {
		return nil, keyErr("unwrap", ref, "", "unwrap under the class key", envelope.ErrKeyUnavailable, err)
	}
	var raw []byte
	if len(rec.Wrapped) == classWrappedSize {
		raw, err = w.Unwrap(rec.Wrapped)
	}
	if len(raw) != envelope.KEKSize {
		clear(raw)
		err := keyErr("unwrap", ref, "", "the KEK does not unwrap under the class key for this keyring, class, tenant and version: it was replaced, moved or corrupted",
			envelope.ErrKeyUnavailable, ErrTampered)
		k.emitTamper(ctx, ref.Scope(), ref.Version, "", err)
		return nil, err
	}
	k.stats.localUnwraps.Add(1)
	return raw, nil
}

// moveToClassKey rewraps r, a live tenant KEK wrapped by the master key,
// under the class key e: one KMS unwrap, once. Upgrade and RewrapAll use
// it to migrate tenant KEKs created before class-key wrapping existed.
func (k *Keyring) moveToClassKey(ctx context.Context, e *classKeyEntry, ref envelope.KEKRef, r *Record) error {
	wrapped, err := rewrapKey(func() ([]byte, error) { return k.unwrap(ctx, ref, r) },
		func(raw []byte) ([]byte, error) { return k.wrapWithClassKey(e, ref, raw) })
	if err != nil {
		return err
	}
	r.WrappedBy, r.MasterKeyURI, r.Wrapped, r.UpdatedAt = WrapClassKey, "", wrapped, k.stamp()
	return nil
}
