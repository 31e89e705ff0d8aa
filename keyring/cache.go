package keyring

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Stats are the keyring's counters since New. The CLI prints them.
type Stats struct {
	KMSWrapCalls   uint64 // Wrap calls made to master keys
	KMSUnwrapCalls uint64 // Unwrap calls made to master keys
	WrapErrors     uint64 // failed Wrap calls
	UnwrapErrors   uint64 // failed Unwrap calls (or master keys that failed to open)
	CacheHits      uint64 // KEK lookups served from a fresh cache entry
	CacheMisses    uint64 // KEK lookups that had to load (store read, KMS unwrap)
	StaleServes    uint64 // lookups served from a KEK past CacheTTL or a scope state past StateRefresh
	Refreshes      uint64 // background revalidations started
	RefreshErrors  uint64 // background revalidations that failed
	StoreReads     uint64 // store reads by lookups and refreshes (scope states, class keys)
	CachedKEKs     int    // unwrapped KEKs in the cache now
	// ClassKeyUnwraps counts tenant KEKs unwrapped locally under their
	// class key (no KMS call).
	ClassKeyUnwraps uint64
	// KMSRejected counts calls to master keys that failed at once because
	// their circuit breaker was open (no KMS call was made).
	KMSRejected uint64
	// KMSProbes counts the circuit breakers' probe calls (also counted in
	// KMSWrapCalls or KMSUnwrapCalls).
	KMSProbes uint64
	// OpenBreakers is the number of master keys whose breaker is open now.
	OpenBreakers int
}

// KMSCalls is the total number of KMS calls (wrap + unwrap).
func (s Stats) KMSCalls() uint64 { return s.KMSWrapCalls + s.KMSUnwrapCalls }

type counters struct {
	kmsWrap, kmsUnwrap, wrapErrors, unwrapErrors atomic.Uint64
	hits, misses, stale                          atomic.Uint64
	refreshes, refreshErrors, storeReads         atomic.Uint64
	rejected, probes, localUnwraps               atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (k *Keyring) Stats() Stats {
	k.mu.RLock()
	n := len(k.keks)
	k.mu.RUnlock()
	open := 0
	k.mkMu.Lock()
	for _, g := range k.mks {
		if g.isOpen() {
			open++
		}
	}
	k.mkMu.Unlock()
	c := &k.stats
	return Stats{
		KMSRejected: c.rejected.Load(), KMSProbes: c.probes.Load(), OpenBreakers: open, ClassKeyUnwraps: c.localUnwraps.Load(),
		KMSWrapCalls: c.kmsWrap.Load(), KMSUnwrapCalls: c.kmsUnwrap.Load(),
		WrapErrors: c.wrapErrors.Load(), UnwrapErrors: c.unwrapErrors.Load(),
		CacheHits: c.hits.Load(), CacheMisses: c.misses.Load(), StaleServes: c.stale.Load(),
		Refreshes: c.refreshes.Load(), RefreshErrors: c.refreshErrors.Load(),
		StoreReads: c.storeReads.Load(), CachedKEKs: n,
	}
}

var _ envelope.KeySource = (*Keyring)(nil)

// PrimaryKEK implements envelope.KeySource: the active KEK of scope. If the
// scope has no KEK yet it creates version 1 (unless WithoutAutoCreate). A
// rotation by another process is seen within StateRefresh plus one store
// read.
func (k *Keyring) PrimaryKEK(ctx context.Context, scope envelope.Scope) (*envelope.KEK, error) {
	st, err := k.lookupScope(ctx, "primary", &scope, accessEncrypt)
	if err != nil {
		return nil, err
	}
	p := st.Primary()
	if p == nil {
		return nil, scopeErr("primary", scope, k.classURI(scope.Class), "every version was destroyed (shredded)", envelope.ErrKeyDestroyed)
	}
	// A KEK unwrapped while a state read showed its version destroyed is
	// refused (putKEK); one cached before is zeroed by that read, so a seal
	// still holding it fails with envelope.ErrKeyDestroyed.
	return k.getKEK(ctx, envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: p.Version}, p)
}

// KEK implements envelope.KeySource: the named version, if it is active or
// decrypt-only. A destroyed version fails with envelope.ErrKeyDestroyed, a
// retired one with ErrKeyRetired and envelope.ErrKeyUnavailable, an
// unknown one with envelope.ErrUnknownKey.
func (k *Keyring) KEK(ctx context.Context, ref envelope.KEKRef) (*envelope.KEK, error) {
	if k.closed.Load() {
		return nil, keyErr("lookup", ref, "", "", envelope.ErrKeyUnavailable, ErrClosed)
	}
	if _, err := k.scope("lookup", ref.Scope()); err != nil {
		return nil, err
	}
	if err := k.allow(ctx, "lookup", ref, accessDecrypt); err != nil {
		return nil, err
	}
	if ref.Version == 0 {
		return nil, keyErr("lookup", ref, "", "version 0 does not exist", envelope.ErrUnknownKey)
	}
	st, err := k.getScope(ctx, ref.Scope(), ref.Version)
	if err != nil {
		return nil, err
	}
	rec, err := k.usableRecord(st, ref)
	if err != nil {
		return nil, err
	}
	return k.getKEK(ctx, ref, rec)
}

// SearchKEKs implements envelope.KeySource: the scope's search keys,
// current first. They change only through RotateSearch and
// FinishSearchRotation, never through Rotate.
func (k *Keyring) SearchKEKs(ctx context.Context, scope envelope.Scope) ([]*envelope.KEK, error) {
	st, err := k.lookupScope(ctx, "search", &scope, accessEncrypt)
	if err != nil {
		return nil, err
	}
	out := make([]*envelope.KEK, 0, len(st.Search))
	for _, v := range st.Search {
		ref := envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: v}
		rec, err := k.usableRecord(st, ref)
		if err != nil {
			return nil, err
		}
		kek, err := k.getKEK(ctx, ref, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, kek)
	}
	return out, nil
}

// usableRecord returns the record of ref in st if its key may be used.
func (k *Keyring) usableRecord(st *ScopeState, ref envelope.KEKRef) (*Record, error) {
	rec := st.Record(ref.Version)
	if rec == nil {
		return nil, keyErr("lookup", ref, k.classURI(ref.Class), fmt.Sprintf("no such version (latest is v%d)", st.maxVersion()), envelope.ErrUnknownKey)
	}
	switch rec.State {
	case StateDestroyed:
		return nil, destroyedErr(ref, rec)
	case StateRetired:
		return nil, keyErr("lookup", ref, rec.MasterKeyURI, "retired (Reactivate to use it again)", ErrKeyRetired, envelope.ErrKeyUnavailable)
	}
	return rec, nil
}

func destroyedErr(ref envelope.KEKRef, rec *Record) error {
	return keyErr("lookup", ref, rec.MasterKeyURI, "destroyed at "+rec.DestroyedAt.UTC().Format(time.RFC3339), envelope.ErrKeyDestroyed)
}

// getKEK serves the key material of ref (whose record, from a verified
// state, is rec) from the cache: fresh, stale (with one background
// refresh), or unwrapped once for all concurrent callers.
func (k *Keyring) getKEK(ctx context.Context, ref envelope.KEKRef, rec *Record) (*envelope.KEK, error) {
	now := k.now()
	k.mu.RLock()
	e := k.keks[ref]
	verified := int64(0)
	if e != nil {
		verified = e.verified.Load()
		if e.parent != nil { // unwrapped through the class key: as fresh as it
			verified = e.parent.verified.Load()
			if k.classKeys[ref.Class] != e.parent {
				verified = 0 // the class key was dropped or replaced: unwrap again
			}
		}
	}
	k.mu.RUnlock()
	if e != nil {
		age := time.Duration(now.UnixNano() - verified)
		if age < k.ttl {
			k.stats.hits.Add(1)
			k.tel.cacheResult(ctx, ref.Scope(), cacheHit)
			return e.kek, nil
		}
		if age < k.maxAge {
			k.stats.stale.Add(1)
			k.tel.cacheResult(ctx, ref.Scope(), cacheStale)
			if e.parent != nil {
				k.refreshClassKeyAsync(ref.Class, e.parent, now)
			} else {
				k.refreshKEKAsync(ref, e, now)
			}
			return e.kek, nil
		}
	}
	k.stats.misses.Add(1)
	k.tel.cacheResult(ctx, ref.Scope(), cacheMiss)
	if err := recentFailure(k, k.fails, ref, now); err != nil {
		return nil, err
	}
	v, err := k.shared(ctx, "kek:"+ref.String(),
		func(err error) error { return keyErr("lookup", ref, "", "", envelope.ErrKeyUnavailable, err) },
		func(ctx context.Context) (any, error) {
			ctx, span := k.tel.span(ctx, "fieldcrypt.kek.load", ref.Scope())
			defer span.End()
			v, err := k.loadKEK(ctx, ref, rec)
			if err != nil {
				span.SetStatus(codes.Error, "load failed")
			}
			return v, err
		})
	if err != nil {
		return nil, err
	}
	return v.(*envelope.KEK), nil
}

// loadKEK unwraps rec through the KMS and caches the KEK. No store read:
// the record comes from a verified scope state.
func (k *Keyring) loadKEK(ctx context.Context, ref envelope.KEKRef, rec *Record) (*envelope.KEK, error) {
	now := k.now()
	k.mu.Lock()
	k.sweepLocked(now) // every slow path zeroes evicted KEKs past their grace
	e := k.keks[ref]
	k.mu.Unlock()
	if e != nil && e.parent == nil && time.Duration(now.UnixNano()-e.verified.Load()) < k.ttl {
		return e.kek, nil // loaded by a flight that ended just before ours
	}
	raw, parent, err := k.unwrapKEK(ctx, ref, rec)
	if err != nil {
		k.mu.Lock()
		if e != nil {
			k.evictLocked(ref, e, false, now) // past MaxAge: no longer servable
		}
		if k.failBO > 0 {
			k.fails[ref] = failure{err: err, until: k.now().Add(k.failBO)}
		}
		k.mu.Unlock()
		return nil, err
	}
	kek, err := envelope.NewKEK(ref, raw)
	clear(raw)
	if err != nil {
		return nil, keyErr("unwrap", ref, rec.MasterKeyURI, "", envelope.ErrKeyUnavailable, err)
	}
	if err := k.putKEK(ref, kek, parent, k.now()); err != nil {
		return nil, err
	}
	return kek, nil
}

// putKEK caches kek (unwrapped through the class key entry parent, or nil
// for the KMS), unless the cached state shows its version destroyed
// meanwhile: then it is zeroed and the destruction reported.
func (k *Keyring) putKEK(ref envelope.KEKRef, kek *envelope.KEK, parent *classKeyEntry, now time.Time) error {
	e := &kekEntry{kek: kek, parent: parent}
	e.verified.Store(now.UnixNano())
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed.Load() {
		k.zero(kek)
		return keyErr("lookup", ref, "", "", envelope.ErrKeyUnavailable, ErrClosed)
	}
	if se := k.scopes[ref.Scope()]; se != nil {
		if rec := se.st.Record(ref.Version); rec != nil && rec.State == StateDestroyed {
			k.zero(kek)
			return destroyedErr(ref, rec)
		}
	}
	if old, ok := k.keks[ref]; ok && old.kek != kek {
		k.graves = append(k.graves, grave{kek: old.kek, at: now})
	}
	k.keks[ref] = e
	delete(k.fails, ref)
	k.sweepLocked(now)
	return nil
}

func (k *Keyring) evict(ref envelope.KEKRef, e *kekEntry, immediate bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.evictLocked(ref, e, immediate, k.now())
}

// evictLocked drops e from the cache. immediate zeroes the KEK now (the
// version was destroyed: failing a caller that still holds it is the
// point); otherwise it is zeroed after the grace period.
func (k *Keyring) evictLocked(ref envelope.KEKRef, e *kekEntry, immediate bool, now time.Time) {
	if k.keks[ref] != e {
		if immediate {
			k.zero(e.kek)
		}
		return
	}
	delete(k.keks, ref)
	if immediate {
		k.zero(e.kek)
		return
	}
	k.graves = append(k.graves, grave{kek: e.kek, at: now})
}

func (k *Keyring) sweepLocked(now time.Time) {
	n := 0
	for _, g := range k.graves {
		if now.Sub(g.at) >= k.grace {
			k.zero(g.kek)
			continue
		}
		k.graves[n] = g
		n++
	}
	clear(k.graves[n:])
	k.graves = k.graves[:n]
	for ref, f := range k.fails {
		if !now.Before(f.until) {
			delete(k.fails, ref)
		}
	}
}

// refreshKEK revalidates a stale entry in the background: unwrap again
// (to see KMS revocation), from the record of the cached scope state (no
// store read: states have their own, shorter refresh). On an outage the
// entry is kept and retried after the retry interval; on a definitive KMS
// answer it is evicted. The cached *KEK object is kept on success: the
// key bytes of a version never change.
func (k *Keyring) refreshKEKAsync(ref envelope.KEKRef, e *kekEntry, now time.Time) {
	k.refreshAsync(&e.refresher, ref.Scope(), now, func(ctx context.Context) time.Time {
		retry := k.now().Add(k.retry)
		k.mu.RLock()
		se := k.scopes[ref.Scope()]
		k.mu.RUnlock()
		if se == nil {
			return retry // the next lookup reloads the state first
		}
		rec := se.st.Record(ref.Version)
		if rec == nil || rec.State == StateDestroyed || rec.State == StateRetired || rec.WrappedBy == WrapClassKey {
			// Gone, or moved under the class key: the next lookup unwraps it there.
			k.evict(ref, e, rec == nil || rec.State == StateDestroyed)
			return time.Time{}
		}
		raw, err := k.unwrap(ctx, ref, rec)
		if err != nil {
			if definitive(err) || errors.Is(err, ErrUntrustedKey) {
				k.evict(ref, e, false)
			}
			return retry
		}
		clear(raw)
		e.verified.Store(k.now().UnixNano())
		return time.Time{}
	})
}
