package keyring

import (
	"context"
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Init creates version 1 of the class-wide scope (tenant "") of every
// configured encrypted class that has no KEK yet, and returns the primary
// of each. It is idempotent.
func (k *Keyring) Init(ctx context.Context) ([]KEKInfo, error) {
	classes := make([]envelope.Class, 0, len(k.scoped))
	for c := range k.scoped {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	var out []KEKInfo
	for _, c := range classes {
		info, err := k.EnsureScope(ctx, envelope.Scope{Class: c})
		if err != nil {
			return out, err
		}
		out = append(out, info)
	}
	return out, nil
}

// EnsureScope creates version 1 of scope (primary and search key) if the
// scope has no KEK yet, and returns its primary. Concurrent calls, from any
// process, create one version 1. A scope whose versions were all
// destroyed is not recreated (use Rotate to start a new version).
func (k *Keyring) EnsureScope(ctx context.Context, scope envelope.Scope) (info KEKInfo, err error) {
	var created *envelope.KEK
	defer func() {
		if created != nil || err != nil {
			k.emit(ctx, audit.KEKCreated, envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: info.Ref.Version}, k.classURI(scope.Class), err, nil)
		}
	}()
	s, err := k.scope("ensure", scope)
	if err != nil {
		return KEKInfo{}, err
	}
	uri := k.classURI(s.Class)
	var final *ScopeState
	err = k.store.UpdateScope(ctx, s, func(st *ScopeState) error {
		if created != nil { // a previous attempt's key, never stored
			k.zero(created)
			created = nil
		}
		final = st
		if len(st.Records) > 0 {
			return nil
		}
		ref := envelope.KEKRef{Class: s.Class, Tenant: s.Tenant, Version: 1}
		kek, wrapped, err := k.newKEK(ctx, ref, uri)
		if err != nil {
			return err
		}
		now := k.now()
		st.Records = append(st.Records, Record{Version: 1, State: StateActive, MasterKeyURI: uri, Wrapped: wrapped, CreatedAt: now, UpdatedAt: now})
		st.Search = []uint32{1}
		created = kek
		return nil
	})
	if err != nil {
		if created != nil {
			k.zero(created)
		}
		return KEKInfo{}, k.opErr("ensure", s, uri, err)
	}
	return k.committed(s, final, created, 0)
}

// committed caches the state an operation just wrote (and a KEK it just
// generated) and returns the info of version v (0: the primary).
func (k *Keyring) committed(s envelope.Scope, st *ScopeState, created *envelope.KEK, v uint32) (KEKInfo, error) {
	st = st.Clone()
	now := k.now()
	k.setScope(s, st, now)
	if created != nil {
		k.putKEK(created.Ref(), created, now)
	}
	var r *Record
	if v == 0 {
		r = st.Primary()
	} else {
		r = st.Record(v)
	}
	if r == nil {
		return KEKInfo{}, nil
	}
	return infoOf(st, r), nil
}

// opErr wraps a store or fn error of an operation so it names the scope
// and master key, unless it already does.
func (k *Keyring) opErr(op string, s envelope.Scope, uri string, err error) error {
	var ke *KeyError
	if errors.As(err, &ke) {
		return err
	}
	if uri == "" {
		uri = k.classURI(s.Class)
	}
	return scopeErr(op, s, uri, "", err)
}

// Rotate adds a new primary version to scope (generated here, wrapped under
// the class's master key) and moves the previous primary to decrypt-only.
// Search keys do not change. On an empty scope it creates version 1.
// Other processes see the new primary within CacheTTL.
func (k *Keyring) Rotate(ctx context.Context, scope envelope.Scope) (info KEKInfo, err error) {
	defer func() {
		k.emit(ctx, audit.KEKRotated, envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: info.Ref.Version}, k.classURI(scope.Class), err, nil)
	}()
	s, err := k.scope("rotate", scope)
	if err != nil {
		return KEKInfo{}, err
	}
	uri := k.classURI(s.Class)
	var created *envelope.KEK
	var final *ScopeState
	err = k.store.UpdateScope(ctx, s, func(st *ScopeState) error {
		if created != nil {
			k.zero(created)
			created = nil
		}
		v := st.maxVersion() + 1
		ref := envelope.KEKRef{Class: s.Class, Tenant: s.Tenant, Version: v}
		kek, wrapped, err := k.newKEK(ctx, ref, uri)
		if err != nil {
			return err
		}
		now := k.now()
		if p := st.Primary(); p != nil {
			p.State = StateDecryptOnly
			p.UpdatedAt = now
		}
		st.Records = append(st.Records, Record{Version: v, State: StateActive, MasterKeyURI: uri, Wrapped: wrapped, CreatedAt: now, UpdatedAt: now})
		if !slices.ContainsFunc(st.Search, func(sv uint32) bool { return st.Record(sv).State != StateDestroyed }) {
			st.Search = []uint32{v} // first version, or a shredded scope restarted
		}
		created, final = kek, st
		return nil
	})
	if err != nil {
		if created != nil {
			k.zero(created)
		}
		return KEKInfo{}, k.opErr("rotate", s, uri, err)
	}
	return k.committed(s, final, created, 0)
}

// RotateSearch starts a search-key transition: the current primary becomes
// the first search key (used for new deterministic values and blind
// indexes); the previous search keys stay live (queries cover them) until
// FinishSearchRotation. Typically: Rotate, RotateSearch, re-index, then
// FinishSearchRotation. It returns the new search versions.
func (k *Keyring) RotateSearch(ctx context.Context, scope envelope.Scope) ([]uint32, error) {
	return k.updateSearch(ctx, "rotate-search", scope, func(st *ScopeState) error {
		p := st.Primary()
		if p == nil {
			return scopeErr("rotate-search", st.Scope, "", "scope has no primary", envelope.ErrUnknownKey)
		}
		if len(st.Search) > 0 && st.Search[0] == p.Version {
			return nil
		}
		st.Search = append([]uint32{p.Version}, slices.DeleteFunc(st.Search, func(v uint32) bool { return v == p.Version })...)
		return nil
	})
}

// FinishSearchRotation ends a search-key transition: only the first search
// key stays. Call it once every blind index and deterministic value has
// been recomputed under it. Returns the new search versions.
func (k *Keyring) FinishSearchRotation(ctx context.Context, scope envelope.Scope) ([]uint32, error) {
	return k.updateSearch(ctx, "finish-search-rotation", scope, func(st *ScopeState) error {
		if len(st.Search) == 0 {
			return scopeErr("finish-search-rotation", st.Scope, "", "scope has no search key", envelope.ErrUnknownKey)
		}
		st.Search = st.Search[:1]
		return nil
	})
}

func (k *Keyring) updateSearch(ctx context.Context, op string, scope envelope.Scope, fn func(*ScopeState) error) ([]uint32, error) {
	s, err := k.scope(op, scope)
	if err != nil {
		return nil, err
	}
	var final *ScopeState
	err = k.store.UpdateScope(ctx, s, func(st *ScopeState) error {
		final = st
		return fn(st)
	})
	if err != nil {
		return nil, k.opErr(op, s, "", err)
	}
	_, _ = k.committed(s, final, nil, 0)
	return slices.Clone(final.Search), nil
}

// Retire stops a decrypt-only version from opening values, without
// destroying it: lookups fail with ErrKeyRetired (and
// envelope.ErrKeyUnavailable). It is reversible with Reactivate, so an
// operator can retire a version, watch for failures, and destroy it only
// when nothing broke. The primary and live search keys cannot be retired.
// Retiring a retired version is a no-op. Other processes see it within
// CacheTTL.
func (k *Keyring) Retire(ctx context.Context, ref envelope.KEKRef) (info KEKInfo, err error) {
	defer func() { k.emit(ctx, audit.KEKRetired, ref, info.MasterKeyURI, err, nil) }()
	return k.transition(ctx, "retire", ref, func(st *ScopeState, r *Record) error {
		switch r.State {
		case StateRetired:
			return nil
		case StateDecryptOnly:
		default:
			return k.refuse("retire", ref, r)
		}
		if rank := st.searchRank(r.Version); rank > 0 {
			return keyErr("retire", ref, r.MasterKeyURI, "it is a live search key (FinishSearchRotation first)", ErrRefused)
		}
		r.State = StateRetired
		r.UpdatedAt = k.now()
		return nil
	})
}

// Reactivate makes a retired version decrypt-only again.
func (k *Keyring) Reactivate(ctx context.Context, ref envelope.KEKRef) (KEKInfo, error) {
	return k.transition(ctx, "reactivate", ref, func(_ *ScopeState, r *Record) error {
		switch r.State {
		case StateDecryptOnly:
			return nil
		case StateRetired:
			r.State = StateDecryptOnly
			r.UpdatedAt = k.now()
			return nil
		}
		return k.refuse("reactivate", ref, r)
	})
}

func (k *Keyring) refuse(op string, ref envelope.KEKRef, r *Record) error {
	switch r.State {
	case StateActive:
		return keyErr(op, ref, r.MasterKeyURI, "it is the primary (Rotate first)", ErrRefused)
	case StateDestroyed:
		return keyErr(op, ref, r.MasterKeyURI, "it was destroyed", ErrRefused, envelope.ErrKeyDestroyed)
	}
	return keyErr(op, ref, r.MasterKeyURI, "not allowed from state "+string(r.State), ErrRefused)
}

func (k *Keyring) transition(ctx context.Context, op string, ref envelope.KEKRef, fn func(*ScopeState, *Record) error) (KEKInfo, error) {
	s, err := k.scope(op, ref.Scope())
	if err != nil {
		return KEKInfo{}, err
	}
	var final *ScopeState
	err = k.store.UpdateScope(ctx, s, func(st *ScopeState) error {
		r := st.Record(ref.Version)
		if r == nil {
			return keyErr(op, ref, "", "no such version", envelope.ErrUnknownKey)
		}
		final = st
		return fn(st, r)
	})
	if err != nil {
		return KEKInfo{}, k.opErr(op, s, "", err)
	}
	return k.committed(s, final, nil, ref.Version)
}

// DestroyOption configures Destroy.
type DestroyOption func(*destroyOptions)

type destroyOptions struct {
	checks []func(context.Context, envelope.KEKRef) error
}

// WithDestroyCheck makes Destroy call check before destroying; if check
// returns an error, Destroy refuses (ErrRefused, with check's error in the
// chain). The CLI uses it to refuse while data still references the
// version. Checks run before the store transaction: the version is not
// the primary, so no new value can start using it meanwhile.
func WithDestroyCheck(check func(ctx context.Context, ref envelope.KEKRef) error) DestroyOption {
	return func(o *destroyOptions) { o.checks = append(o.checks, check) }
}

// Destroy crypto-shreds a version: its wrapped key is deleted from the
// store and a tombstone (state destroyed, destruction time, master key
// URI) is kept, so lookups fail with envelope.ErrKeyDestroyed rather than
// envelope.ErrUnknownKey. The cached copy in this process is zeroed at
// once; other processes drop theirs within CacheTTL. Irreversible.
//
// It refuses the primary and live search keys (ErrRefused). Destroying a
// destroyed version is a no-op. Decrypt-only and retired versions can be
// destroyed; retiring first is the prudent path.
func (k *Keyring) Destroy(ctx context.Context, ref envelope.KEKRef, opts ...DestroyOption) (info KEKInfo, err error) {
	defer func() { k.emit(ctx, audit.KEKDestroyed, ref, info.MasterKeyURI, err, nil) }()
	var o destroyOptions
	for _, opt := range opts {
		opt(&o)
	}
	s, err := k.scope("destroy", ref.Scope())
	if err != nil {
		return KEKInfo{}, err
	}
	check := func(st *ScopeState) (*Record, error) {
		r := st.Record(ref.Version)
		if r == nil {
			return nil, keyErr("destroy", ref, "", "no such version", envelope.ErrUnknownKey)
		}
		switch r.State {
		case StateDestroyed:
			return r, nil
		case StateActive:
			return nil, k.refuse("destroy", ref, r)
		}
		if st.searchRank(r.Version) > 0 {
			return nil, keyErr("destroy", ref, r.MasterKeyURI, "it is a live search key (RotateSearch and FinishSearchRotation first)", ErrRefused)
		}
		return r, nil
	}
	// Pre-check against the store, then the caller's checks, then destroy
	// under the scope lock (re-checking).
	st, err := k.store.LoadScope(ctx, s)
	if err != nil {
		return KEKInfo{}, k.opErr("destroy", s, "", err)
	}
	r, err := check(st)
	if err != nil {
		return KEKInfo{}, err
	}
	if r.State == StateDestroyed {
		return infoOf(st, r), nil
	}
	for _, c := range o.checks {
		if err := c(ctx, ref); err != nil {
			return KEKInfo{}, keyErr("destroy", ref, r.MasterKeyURI, "destroy check failed", ErrRefused, err)
		}
	}
	var final *ScopeState
	err = k.store.UpdateScope(ctx, s, func(st *ScopeState) error {
		r, err := check(st)
		if err != nil {
			return err
		}
		final = st
		if r.State != StateDestroyed {
			shred(r, k.now())
		}
		return nil
	})
	if err != nil {
		return KEKInfo{}, k.opErr("destroy", s, "", err)
	}
	return k.committed(s, final, nil, ref.Version)
}

func shred(r *Record, now time.Time) {
	clear(r.Wrapped)
	r.Wrapped = nil
	r.State = StateDestroyed
	r.DestroyedAt = now
	r.UpdatedAt = now
}

// ShredReport says what ShredTenant destroyed.
type ShredReport struct {
	Tenant           string
	At               time.Time         // when the shred started
	Destroyed        []KEKInfo         // versions destroyed now (DestroyedAt set)
	AlreadyDestroyed []envelope.KEKRef // versions destroyed earlier
	Scopes           []envelope.Scope  // every scope of the tenant
}

// ShredTenant crypto-shreds a tenant: it destroys every KEK version, the
// primary and search keys included, of every scope of the tenant in every
// class (configured or not). Afterwards lookups for the tenant fail with
// envelope.ErrKeyDestroyed and its scopes are never recreated
// automatically. Stop the tenant's traffic first: a scope created
// concurrently in a class where the tenant had none is not shredded (run
// ShredTenant again). The report lists what was destroyed and when; on
// error it lists what was destroyed before the error.
func (k *Keyring) ShredTenant(ctx context.Context, tenant string) (rep ShredReport, err error) {
	defer func() {
		for _, d := range rep.Destroyed {
			k.emit(ctx, audit.KEKDestroyed, d.Ref, d.MasterKeyURI, nil, nil)
		}
		k.emit(ctx, audit.TenantShredded, envelope.KEKRef{Tenant: tenant}, "", err, map[string]int64{
			"kek_versions_destroyed": int64(len(rep.Destroyed)), "kek_versions_already_destroyed": int64(len(rep.AlreadyDestroyed)), "scopes": int64(len(rep.Scopes))})
	}()
	rep = ShredReport{Tenant: tenant, At: k.now()}
	if tenant == "" {
		return rep, scopeErr("shred-tenant", envelope.Scope{}, "", "empty tenant (would shred class-wide keys)", ErrRefused)
	}
	all, err := k.store.ListScopes(ctx)
	if err != nil {
		return rep, scopeErr("shred-tenant", envelope.Scope{Tenant: tenant}, "", "list scopes", err)
	}
	for _, st0 := range all {
		if st0.Scope.Tenant != tenant {
			continue
		}
		s := st0.Scope
		rep.Scopes = append(rep.Scopes, s)
		var final *ScopeState
		var destroyed []uint32
		var already []envelope.KEKRef
		err := k.store.UpdateScope(ctx, s, func(st *ScopeState) error {
			destroyed, already, final = nil, nil, st
			now := k.now()
			for i := range st.Records {
				r := &st.Records[i]
				if r.State == StateDestroyed {
					already = append(already, envelope.KEKRef{Class: s.Class, Tenant: s.Tenant, Version: r.Version})
					continue
				}
				shred(r, now)
				destroyed = append(destroyed, r.Version)
			}
			return nil
		})
		if err != nil {
			return rep, k.opErr("shred-tenant", s, "", err)
		}
		final = final.Clone()
		k.setScope(s, final, k.now())
		for _, v := range destroyed {
			rep.Destroyed = append(rep.Destroyed, infoOf(final, final.Record(v)))
		}
		rep.AlreadyDestroyed = append(rep.AlreadyDestroyed, already...)
	}
	return rep, nil
}

// List returns the metadata of every KEK version in the store, by class,
// tenant and version. It never returns key material.
func (k *Keyring) List(ctx context.Context) ([]KEKInfo, error) {
	all, err := k.store.ListScopes(ctx)
	if err != nil {
		return nil, scopeErr("list", envelope.Scope{}, "", "", err)
	}
	var out []KEKInfo
	for _, st := range all {
		for i := range st.Records {
			out = append(out, infoOf(st, &st.Records[i]))
		}
	}
	return out, nil
}

// RewrapReport says what RewrapAll did.
type RewrapReport struct {
	Class       envelope.Class
	From        []string // master key URIs KEKs were unwrapped under
	To          string
	Rewrapped   int // versions moved to To now
	AlreadyDone int // versions already under To (an earlier, interrupted run)
	Destroyed   int // tombstones, nothing to rewrap
	// Config is the keyring configuration with the class's master key
	// replaced by To. The caller must persist it (the keyring already uses
	// it); until then, keep the old master key enabled. Only disable the
	// old master key once Config is persisted and a re-run reports
	// Rewrapped == 0.
	Config Config
}

// RewrapAll rotates the master key of class: every KEK version of the
// class (all tenants) is unwrapped under the master key it is stored under
// and wrapped under newURI, then the keyring switches the class to newURI
// for new KEKs. One unwrap and one wrap per version; no data is touched;
// cached KEKs stay valid. Each scope is rewritten in one transaction, so
// an interrupted run leaves every version readable (each record names its
// master key) and re-running finishes the job.
//
// newURI must be well-formed and not be another class's master key
// (ErrInvalidConfig).
func (k *Keyring) RewrapAll(ctx context.Context, class envelope.Class, newURI string) (rep RewrapReport, err error) {
	defer func() {
		k.emit(ctx, audit.KEKRewrapped, envelope.KEKRef{Class: class}, newURI, err, map[string]int64{
			"rewrapped": int64(rep.Rewrapped), "already_done": int64(rep.AlreadyDone), "destroyed": int64(rep.Destroyed)})
	}()
	rep = RewrapReport{Class: class, To: newURI}
	s, err := k.scope("rewrap", envelope.Scope{Class: class})
	if err != nil {
		return rep, err
	}
	if p := uriProblem(newURI); p != "" {
		return rep, scopeErr("rewrap", s, newURI, "", configErr("class %q: master key URI %q: %s", class.String(), newURI, p))
	}
	if owner := k.uriOwner(newURI); owner != 0 && owner != class {
		return rep, scopeErr("rewrap", s, newURI, "", configErr("class %q: master key %q is the master key of class %q (keys never cross classification levels)", class.String(), newURI, owner.String()))
	}
	all, err := k.store.ListScopes(ctx)
	if err != nil {
		return rep, scopeErr("rewrap", s, newURI, "list scopes", err)
	}
	from := map[string]bool{}
	for _, st0 := range all {
		if st0.Scope.Class != class {
			continue
		}
		sc := st0.Scope
		var final *ScopeState
		var n, done, dead int
		var srcs []string
		err := k.store.UpdateScope(ctx, sc, func(st *ScopeState) error {
			n, done, dead, srcs, final = 0, 0, 0, nil, st
			for i := range st.Records {
				r := &st.Records[i]
				ref := envelope.KEKRef{Class: sc.Class, Tenant: sc.Tenant, Version: r.Version}
				switch {
				case r.State == StateDestroyed:
					dead++
					continue
				case r.MasterKeyURI == newURI:
					done++
					continue
				}
				raw, err := k.unwrap(ctx, ref, r)
				if err != nil {
					return err
				}
				wrapped, err := k.wrap(ctx, ref, newURI, raw)
				clear(raw)
				if err != nil {
					return err
				}
				srcs = append(srcs, r.MasterKeyURI)
				r.MasterKeyURI, r.Wrapped, r.UpdatedAt = newURI, wrapped, k.now()
				n++
			}
			return nil
		})
		if err != nil {
			rep.From = sortedKeys(from)
			return rep, k.opErr("rewrap", sc, newURI, err)
		}
		for _, u := range srcs {
			from[u] = true
		}
		rep.Rewrapped += n
		rep.AlreadyDone += done
		rep.Destroyed += dead
		k.setScope(sc, final.Clone(), k.now())
	}
	rep.From = sortedKeys(from)
	k.cfgMu.Lock()
	cc := k.cfg.Classes[class.String()]
	cc.MasterKey = newURI
	k.cfg.Classes[class.String()] = cc
	rep.Config = k.cfg.clone()
	k.cfgMu.Unlock()
	return rep, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
