package keyring

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// The scope-state cache. A scope's state (which version is primary, which
// are retired or destroyed, the search keys) is a store read, verified on
// every read; it is cached apart from KEK material (a KMS unwrap) because
// it must reach every process much sooner: it is served fresh for
// StateRefresh, then served while one background read refreshes it, and
// never once it is MaxStateAge old: then lookups wait for the store and
// fail with envelope.ErrKeyUnavailable if it does not answer.

// lookupScope checks *scope, and that the process may use it as need
// says, and returns its (cached) state, creating version 1 if the scope is
// empty and auto-creation is on.
func (k *Keyring) lookupScope(ctx context.Context, op string, scope *envelope.Scope, need access) (*ScopeState, error) {
	if k.closed.Load() {
		return nil, scopeErr(op, *scope, "", "", envelope.ErrKeyUnavailable, ErrClosed)
	}
	s, err := k.scope(op, *scope)
	if err != nil {
		return nil, err
	}
	if err := k.allow(ctx, op, envelope.KEKRef{Class: s.Class, Tenant: s.Tenant}, need); err != nil {
		return nil, err
	}
	*scope = s
	st, err := k.getScope(ctx, s, 0)
	if err != nil {
		return nil, err
	}
	if len(st.Records) == 0 {
		if !k.auto {
			return nil, scopeErr(op, s, k.classURI(s.Class), "scope has no KEK yet (run init, or enable auto-creation)", envelope.ErrUnknownKey)
		}
		v, err := k.shared(ctx, "create:"+s.String(), func(err error) error {
			return scopeErr(op, s, "", "", envelope.ErrKeyUnavailable, err)
		}, func(dctx context.Context) (any, error) {
			if _, err := k.EnsureScope(dctx, s); err != nil {
				return nil, err
			}
			return k.getScope(dctx, s, 1)
		})
		if err != nil {
			return nil, err
		}
		st = v.(*ScopeState)
	}
	return st, nil
}

// getScope returns the verified state of scope: from the cache if it holds
// minVersion (0: any) and is younger than StateRefresh, or younger than
// MaxStateAge (then one background read refreshes it); otherwise it reads
// the store once for all concurrent callers.
func (k *Keyring) getScope(ctx context.Context, scope envelope.Scope, minVersion uint32) (*ScopeState, error) {
	now := k.now()
	k.mu.RLock()
	e := k.scopes[scope]
	k.mu.RUnlock()
	if e != nil && e.st.maxVersion() >= minVersion {
		age := now.Sub(e.fetched)
		if age < k.refresh {
			return e.st, nil
		}
		if age < maxStateAge {
			k.stats.stale.Add(1)
			k.tel.cacheResult(ctx, scope, cacheStale)
			k.refreshScopeAsync(scope, e, now)
			return e.st, nil
		}
	}
	if err := recentFailure(k, k.scopeFails, scope, now); err != nil {
		return nil, err
	}
	key := fmt.Sprintf("scope:%s:%d", scope, minVersion)
	v, err := k.shared(ctx, key, func(err error) error {
		return scopeErr("lookup", scope, "", "", envelope.ErrKeyUnavailable, err)
	}, func(dctx context.Context) (any, error) {
		st, err := k.loadScope(dctx, "lookup", scope)
		if err != nil {
			if k.failBO > 0 {
				k.mu.Lock()
				k.scopeFails[scope] = failure{err: err, until: k.now().Add(k.failBO)}
				k.mu.Unlock()
			}
			return nil, err
		}
		return st, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*ScopeState), nil
}

// loadScope reads scope from the store, verifies it and caches it. A state
// that fails verification also drops the cached one: a store that was
// tampered with is not trusted for what it said before either.
func (k *Keyring) loadScope(ctx context.Context, op string, scope envelope.Scope) (*ScopeState, error) {
	floor := k.epochFloor(scope)
	started := k.now()
	k.stats.storeReads.Add(1)
	st, err := k.store.LoadScope(ctx, scope)
	if err != nil {
		return nil, scopeErr(op, scope, k.classURI(scope.Class), "read store", envelope.ErrKeyUnavailable, err)
	}
	if _, err := k.verify(ctx, op, st, floor); err != nil {
		if errors.Is(err, ErrTampered) || errors.Is(err, ErrUnsealed) {
			k.mu.Lock()
			delete(k.scopes, scope)
			k.mu.Unlock()
		}
		return nil, err
	}
	k.setScope(scope, st, started)
	return st, nil
}

// setScope caches a verified st, read by a read that started at fetched
// (or written at fetched), unless a newer state is cached already; and
// evicts the cached KEKs it shows destroyed (zeroed at once) or retired
// (zeroed after the grace period).
func (k *Keyring) setScope(scope envelope.Scope, st *ScopeState, fetched time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if old := k.scopes[scope]; old != nil && (st.Epoch < old.st.Epoch || st.Epoch == old.st.Epoch && fetched.Before(old.fetched)) {
		return // a read that started earlier and finished later
	}
	k.scopes[scope] = &scopeEntry{st: st, fetched: fetched}
	if st.Epoch > k.epochs[scope] {
		k.epochs[scope] = st.Epoch
	}
	delete(k.scopeFails, scope)
	for i := range st.Records {
		r := &st.Records[i]
		if r.State != StateDestroyed && r.State != StateRetired {
			continue
		}
		ref := envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: r.Version}
		if e, ok := k.keks[ref]; ok {
			k.evictLocked(ref, e, r.State == StateDestroyed, fetched)
		}
		if r.State == StateDestroyed { // also copies waiting out their grace
			k.graves = slices.DeleteFunc(k.graves, func(g grave) bool {
				if g.kek.Ref() == ref {
					k.zero(g.kek)
					return true
				}
				return false
			})
		}
	}
	k.sweepLocked(k.now())
}

// refreshScopeAsync re-reads a scope older than StateRefresh in the
// background. A failed read is retried after half a StateRefresh; the
// entry stops being served at MaxStateAge either way.
func (k *Keyring) refreshScopeAsync(scope envelope.Scope, e *scopeEntry, now time.Time) {
	k.refreshAsync(&e.refresher, scope, now, func(ctx context.Context) time.Time {
		if _, err := k.loadScope(ctx, "refresh", scope); err != nil {
			return k.now().Add(k.refresh / 2)
		}
		return time.Time{}
	})
}
