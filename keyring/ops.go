package keyring

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Init creates version 1 of the class-wide scope (tenant "") of every
// configured encrypted class that has no KEK yet (every one this process
// may use, with Config.Decrypt or EncryptOnly), and returns the primary
// of each. It is idempotent.
func (k *Keyring) Init(ctx context.Context) ([]KEKInfo, error) {
	classes := make([]envelope.Class, 0, len(k.scoped))
	for c := range k.scoped {
		if k.allowed(c) {
			classes = append(classes, c)
		}
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
func (k *Keyring) EnsureScope(ctx context.Context, scope envelope.Scope) (KEKInfo, error) {
	info, _, err := k.ensureScope(ctx, scope)
	return info, err
}

// ensureScope is EnsureScope; it also reports whether it created version 1.
func (k *Keyring) ensureScope(ctx context.Context, scope envelope.Scope) (info KEKInfo, made bool, err error) {
	var created *envelope.KEK
	defer func() {
		if created != nil || err != nil {
			k.emit(ctx, audit.KEKCreated, envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: info.Ref.Version}, k.classURI(scope.Class), err, nil)
		}
	}()
	s, err := k.scope("ensure", scope)
	if err != nil {
		return KEKInfo{}, false, err
	}
	if err := k.allow(ctx, "ensure", envelope.KEKRef{Class: s.Class, Tenant: s.Tenant}, accessEncrypt); err != nil {
		return KEKInfo{}, false, err
	}
	uri := k.classURI(s.Class)
	final, err := k.update(ctx, "ensure", s, func(st *ScopeState) error {
		if created != nil { // a previous attempt's key, never stored
			k.zero(created)
			created = nil
		}
		if len(st.Records) > 0 {
			return nil
		}
		ref := envelope.KEKRef{Class: s.Class, Tenant: s.Tenant, Version: 1}
		kek, rec, err := k.newKEK(ctx, ref, uri)
		if err != nil {
			return err
		}
		now := k.stamp()
		rec.State, rec.CreatedAt, rec.UpdatedAt = StateActive, now, now
		st.Records = append(st.Records, rec)
		st.Search = []uint32{1}
		created = kek
		return nil
	})
	if err != nil {
		if created != nil {
			k.zero(created)
			created = nil
		}
		return KEKInfo{}, false, err
	}
	made = created != nil
	return k.committed(final, created, 0), made, nil
}

// committed caches a KEK an operation just generated (update cached the
// state it wrote) and returns the info of version v (0: the primary) in st.
func (k *Keyring) committed(st *ScopeState, created *envelope.KEK, v uint32) KEKInfo {
	if created != nil {
		var parent *classKeyEntry
		if r := st.Record(created.Ref().Version); r != nil && r.WrappedBy == WrapClassKey {
			if parent = k.cachedClassKey(created.Ref().Class); parent == nil {
				k.zero(created) // unwrapped again on first use
				created = nil
			}
		}
		if created != nil {
			_ = k.putKEK(created.Ref(), created, parent, k.now()) // a new version is not destroyed
		}
	}
	r := st.Primary()
	if v != 0 {
		r = st.Record(v)
	}
	if r == nil {
		return KEKInfo{}
	}
	return infoOf(st, r)
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
// Other processes see the new primary within StateRefresh plus one store
// read, and stop sealing under the old one within MaxStateAge: the
// demoted version records when (DemotedAt), and Destroy and Retire wait
// for that bound.
func (k *Keyring) Rotate(ctx context.Context, scope envelope.Scope) (info KEKInfo, err error) {
	defer func() {
		k.emit(ctx, audit.KEKRotated, envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: info.Ref.Version}, k.classURI(scope.Class), err, nil)
	}()
	s, err := k.scope("rotate", scope)
	if err != nil {
		return KEKInfo{}, err
	}
	if err := k.allow(ctx, "rotate", envelope.KEKRef{Class: s.Class, Tenant: s.Tenant}, accessDecrypt); err != nil {
		return KEKInfo{}, err
	}
	uri := k.classURI(s.Class)
	var created *envelope.KEK
	final, err := k.update(ctx, "rotate", s, func(st *ScopeState) error {
		if created != nil {
			k.zero(created)
			created = nil
		}
		v := st.maxVersion() + 1
		ref := envelope.KEKRef{Class: s.Class, Tenant: s.Tenant, Version: v}
		kek, rec, err := k.newKEK(ctx, ref, uri)
		if err != nil {
			return err
		}
		now := k.stamp()
		if p := st.Primary(); p != nil {
			p.State = StateDecryptOnly
			p.UpdatedAt = now
			p.DemotedAt = now
		}
		rec.State, rec.CreatedAt, rec.UpdatedAt = StateActive, now, now
		st.Records = append(st.Records, rec)
		if !slices.ContainsFunc(st.Search, func(sv uint32) bool { return st.Record(sv).State != StateDestroyed }) {
			st.Search = []uint32{v} // first version, or a shredded scope restarted
		}
		created = kek
		return nil
	})
	if err != nil {
		if created != nil {
			k.zero(created)
		}
		return KEKInfo{}, err
	}
	return k.committed(final, created, 0), nil
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
	if err := k.allow(ctx, op, envelope.KEKRef{Class: s.Class, Tenant: s.Tenant}, accessDecrypt); err != nil {
		return nil, err
	}
	final, err := k.update(ctx, op, s, fn)
	if err != nil {
		return nil, err
	}
	return slices.Clone(final.Search), nil
}

// Retire stops a decrypt-only version from opening values, without
// destroying it: lookups fail with ErrKeyRetired (and
// envelope.ErrKeyUnavailable). It is reversible with Reactivate, so an
// operator can retire a version, watch for failures, and destroy it only
// when nothing broke. The primary and live search keys cannot be retired.
// Retiring a retired version is a no-op. Other processes see it within
// StateRefresh plus one store read.
//
// Like Destroy, it refuses (ErrTooSoon) while a running process may still
// hold the version as its primary, unless the Force option is given;
// other options are Destroy's only.
func (k *Keyring) Retire(ctx context.Context, ref envelope.KEKRef, opts ...DestroyOption) (info KEKInfo, err error) {
	defer func() { k.emit(ctx, audit.KEKRetired, ref, info.MasterKeyURI, err, nil) }()
	o := destroyOpts(opts)
	return k.transition(ctx, "retire", ref, func(st *ScopeState, r *Record) error {
		switch r.State {
		case StateRetired:
			return nil
		case StateDecryptOnly:
		default:
			return k.refuse("retire", ref, r)
		}
		if rank := st.searchRank(r.Version); rank > 0 {
			return keyErr("retire", ref, r.MasterKeyURI, "it is a live search key (end the search-key rotation first: fieldcrypt keys rotate --finish-search)", ErrRefused)
		}
		if !o.force {
			if err := k.tooSoon("retire", ref, r); err != nil {
				return err
			}
		}
		r.State = StateRetired
		r.UpdatedAt = k.stamp()
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
			r.UpdatedAt = k.stamp()
			return nil
		}
		return k.refuse("reactivate", ref, r)
	})
}

func (k *Keyring) refuse(op string, ref envelope.KEKRef, r *Record) error {
	switch r.State {
	case StateActive:
		return keyErr(op, ref, r.MasterKeyURI, "it is the primary (rotate first: fieldcrypt keys rotate)", ErrRefused)
	case StateDestroyed:
		return keyErr(op, ref, r.MasterKeyURI, "it was destroyed", ErrRefused, envelope.ErrKeyDestroyed)
	}
	return keyErr(op, ref, r.MasterKeyURI, "not allowed from state "+string(r.State), ErrRefused)
}

// tooSoon refuses to retire or destroy r while a running process may
// still seal new values under it: until MaxStateAge + DemotionSlack after
// it stopped being the primary. Every process re-reads the scope state
// within MaxStateAge, so after that none holds it as primary.
func (k *Keyring) tooSoon(op string, ref envelope.KEKRef, r *Record) error {
	now := k.now()
	until := inUseUntil(r.DemotedAt, r.UpdatedAt)
	if !now.Before(until) {
		return nil
	}
	what, since := "was primary until", r.DemotedAt
	if since.IsZero() {
		what, since = "was last changed at", r.UpdatedAt // demoted before DemotedAt was recorded
	}
	left := (until.Sub(now) + time.Second - 1).Truncate(time.Second)
	return keyErr(op, ref, r.MasterKeyURI, fmt.Sprintf("v%d %s %s; every process stops using it by %s; %s left (Force, or --force, overrides)",
		ref.Version, what, clock(since), clock(until), left), ErrTooSoon, ErrRefused)
}

func clock(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func (k *Keyring) transition(ctx context.Context, op string, ref envelope.KEKRef, fn func(*ScopeState, *Record) error) (KEKInfo, error) {
	s, err := k.scope(op, ref.Scope())
	if err != nil {
		return KEKInfo{}, err
	}
	if err := k.allow(ctx, op, ref, accessDecrypt); err != nil {
		return KEKInfo{}, err
	}
	final, err := k.update(ctx, op, s, func(st *ScopeState) error {
		r := st.Record(ref.Version)
		if r == nil {
			return keyErr(op, ref, "", "no such version", envelope.ErrUnknownKey)
		}
		return fn(st, r)
	})
	if err != nil {
		return KEKInfo{}, err
	}
	return k.committed(final, nil, ref.Version), nil
}

// DestroyOption configures Destroy (and, for Force, Retire).
type DestroyOption func(*destroyOptions)

type destroyOptions struct {
	checks []func(context.Context, envelope.KEKRef) error
	force  bool
	counts func() map[string]int64
}

func destroyOpts(opts []DestroyOption) destroyOptions {
	var o destroyOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithDestroyCheck makes Destroy call check before destroying; if check
// returns an error, Destroy refuses (ErrRefused, with check's error in the
// chain). The CLI uses it to refuse while data still references the
// version, and to ask for confirmation. Checks run before the store
// transaction, after the version was found destroyable: it is not the
// primary and no process still uses it as one, so no new value can start
// using it meanwhile.
func WithDestroyCheck(check func(ctx context.Context, ref envelope.KEKRef) error) DestroyOption {
	return func(o *destroyOptions) { o.checks = append(o.checks, check) }
}

// WithAuditCounts adds the counts counts returns (called once, after the
// destroy) to Destroy's kek.destroyed event: what the caller's checks found.
func WithAuditCounts(counts func() map[string]int64) DestroyOption {
	return func(o *destroyOptions) { o.counts = counts }
}

// Force makes Destroy and Retire skip the wait for every process to stop
// using the version as its primary (ErrTooSoon). A process that still
// seals under it until its next state read (at most MaxStateAge) writes
// values that are unreadable once the version is destroyed (or retired,
// until reactivated). Only for a compromised key, with confirmation.
func Force() DestroyOption { return func(o *destroyOptions) { o.force = true } }

// Destroy crypto-shreds a version: its wrapped key is deleted from the
// store and a tombstone (state destroyed, destruction time, master key
// URI) is kept, so lookups fail with envelope.ErrKeyDestroyed rather than
// envelope.ErrUnknownKey. The cached copy in this process is zeroed at
// once; other processes zero theirs at their next state read, within
// StateRefresh plus one read (MaxStateAge at most). Irreversible.
//
// It refuses the primary and live search keys (ErrRefused), and, unless
// Force is given, a version that stopped being the primary less than
// MaxStateAge + DemotionSlack ago (ErrTooSoon, naming the time left): a
// process may still be sealing new values under it, which would be lost.
// Destroying a destroyed version is a no-op (and records no event).
// Decrypt-only and retired versions can be destroyed; retiring first is
// the prudent path.
func (k *Keyring) Destroy(ctx context.Context, ref envelope.KEKRef, opts ...DestroyOption) (info KEKInfo, err error) {
	o := destroyOpts(opts)
	already := false // destroying a destroyed version records nothing new
	defer func() {
		if already && err == nil {
			return
		}
		var counts map[string]int64
		if o.counts != nil {
			counts = o.counts()
		}
		k.emit(ctx, audit.KEKDestroyed, ref, info.MasterKeyURI, err, counts)
	}()
	s, err := k.scope("destroy", ref.Scope())
	if err != nil {
		return KEKInfo{}, err
	}
	if err := k.allow(ctx, "destroy", ref, accessDecrypt); err != nil {
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
			return nil, keyErr("destroy", ref, r.MasterKeyURI, "it is a live search key (rotate search keys first: fieldcrypt keys rotate --search, re-encrypt or rebuild, then fieldcrypt keys rotate --finish-search)", ErrRefused)
		}
		if !o.force {
			if err := k.tooSoon("destroy", ref, r); err != nil {
				return nil, err
			}
		}
		return r, nil
	}
	// Pre-check against the store, then the caller's checks, then destroy
	// under the scope lock (re-checking).
	st, err := k.loadScope(ctx, "destroy", s)
	if err != nil {
		return KEKInfo{}, err
	}
	r, err := check(st)
	if err != nil {
		return KEKInfo{}, err
	}
	if r.State == StateDestroyed {
		already = true
		return infoOf(st, r), nil
	}
	for _, c := range o.checks {
		if err := c(ctx, ref); err != nil {
			return KEKInfo{}, keyErr("destroy", ref, r.MasterKeyURI, "destroy check failed", ErrRefused, err)
		}
	}
	final, err := k.update(ctx, "destroy", s, func(st *ScopeState) error {
		r, err := check(st)
		if err != nil {
			return err
		}
		if r.State != StateDestroyed {
			shred(r, k.stamp())
		}
		return nil
	})
	if err != nil {
		return KEKInfo{}, err
	}
	return k.committed(final, nil, ref.Version), nil
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
// configured class, at once (no wait for running processes: their writes
// for the tenant fail with envelope.ErrKeyDestroyed from their next state
// read on). Afterwards lookups for the tenant fail with
// envelope.ErrKeyDestroyed and its scopes are never recreated
// automatically. Stop the tenant's traffic first: a scope created
// concurrently in a class where the tenant had none is not shredded (run
// ShredTenant again). It refuses (ErrRefused), before destroying anything,
// if the tenant has keys in a class the configuration does not list: the
// keyring could not verify or re-seal them. The report lists what was
// destroyed and when; on error it lists what was destroyed before the
// error.
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
	var scopes []envelope.Scope
	for _, st := range all {
		if st.Scope.Tenant != tenant {
			continue
		}
		if _, ok := k.scoped[st.Scope.Class]; !ok {
			return rep, scopeErr("shred-tenant", st.Scope, "", "class "+st.Scope.Class.String()+" is not configured in this keyring, so its keys cannot be verified or re-sealed: configure it (with its master key) and shred again", ErrRefused)
		}
		if err := k.allow(ctx, "shred-tenant", envelope.KEKRef{Class: st.Scope.Class, Tenant: tenant}, accessDecrypt); err != nil {
			return rep, err
		}
		scopes = append(scopes, st.Scope)
	}
	for _, s := range scopes {
		rep.Scopes = append(rep.Scopes, s)
		var destroyed []uint32
		var already []envelope.KEKRef
		final, err := k.update(ctx, "shred-tenant", s, func(st *ScopeState) error {
			destroyed, already = nil, nil
			now := k.stamp()
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
			return rep, err
		}
		for _, v := range destroyed {
			rep.Destroyed = append(rep.Destroyed, infoOf(final, final.Record(v)))
		}
		rep.AlreadyDestroyed = append(rep.AlreadyDestroyed, already...)
	}
	return rep, nil
}

// List returns the metadata of every KEK version in the store, by class,
// tenant and version. It never returns key material. Scopes of configured
// classes are verified like lookups verify them (a tampered store fails
// List with ErrTampered); scopes of classes this configuration does not
// list, or that this process may not use (Config.Decrypt, EncryptOnly),
// cannot be verified and are listed as stored.
func (k *Keyring) List(ctx context.Context) ([]KEKInfo, error) {
	started := k.now()
	floors := map[envelope.Scope]uint64{}
	k.mu.RLock()
	for s, e := range k.epochs {
		floors[s] = e
	}
	k.mu.RUnlock()
	all, err := k.store.ListScopes(ctx)
	if err != nil {
		return nil, scopeErr("list", envelope.Scope{}, "", "", err)
	}
	var out []KEKInfo
	for _, st := range all {
		if _, ok := k.scoped[st.Scope.Class]; ok && k.allowed(st.Scope.Class) {
			if _, err := k.verify(ctx, "list", st, floors[st.Scope]); err != nil {
				return nil, err
			}
			k.setScope(st.Scope, st, started)
		}
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
	Rewrapped   int  // versions moved to To now
	AlreadyDone int  // versions already under To (an earlier, interrupted run)
	Destroyed   int  // tombstones, nothing to rewrap
	ClassKey    bool // the class key was moved to To now
	// UnderClassKey counts tenant KEK versions wrapped by the class key:
	// moving the class key to To moves them too, with no call each.
	UnderClassKey int
	// MovedToClassKey counts tenant KEK versions that were wrapped by the
	// old master key and are now wrapped by the class key (like Upgrade
	// does), rather than by To: no longer a KMS call each per process.
	MovedToClassKey int
	// Config is the keyring configuration with the class's master key
	// replaced by To and the previous one added to PreviousMasterKeys. The
	// caller must persist it (the keyring already uses it). Every process
	// must trust To before RewrapAll starts (list it in their
	// PreviousMasterKeys), or it refuses the KEKs moved under it
	// (ErrUntrustedKey) until it gets the new configuration. Only disable
	// the old master key, and drop it from PreviousMasterKeys, once every
	// process runs with Config and a re-run reports Rewrapped == 0.
	Config Config
}

// RewrapAll rotates the master key of class: every KEK version of the
// class (all tenants), and the class key, is unwrapped under the master key
// it is stored under and wrapped under newURI, then the keyring switches
// the class to newURI for new KEKs (the old master key stays trusted, in
// PreviousMasterKeys). One unwrap and one wrap per version; no data is
// touched; cached KEKs stay valid. Each scope is rewritten in one
// transaction, so an interrupted run leaves every version readable (each
// record names its master key, among the trusted ones) and re-running
// finishes the job.
//
// newURI must be well-formed and not be another class's master key
// (ErrInvalidConfig).
func (k *Keyring) RewrapAll(ctx context.Context, class envelope.Class, newURI string) (rep RewrapReport, err error) {
	defer func() {
		k.emit(ctx, audit.KEKRewrapped, envelope.KEKRef{Class: class}, newURI, err, map[string]int64{
			"rewrapped": int64(rep.Rewrapped), "already_done": int64(rep.AlreadyDone), "destroyed": int64(rep.Destroyed),
			"under_class_key": int64(rep.UnderClassKey), "moved_to_class_key": int64(rep.MovedToClassKey)})
	}()
	rep = RewrapReport{Class: class, To: newURI}
	s, err := k.scope("rewrap", envelope.Scope{Class: class})
	if err != nil {
		return rep, err
	}
	if err := k.allow(ctx, "rewrap", envelope.KEKRef{Class: class}, accessDecrypt); err != nil {
		return rep, err
	}
	if p := uriProblem(k.uris, newURI); p != "" {
		return rep, scopeErr("rewrap", s, newURI, "", configErr("class %q: master key URI %q: %s", class.String(), newURI, p))
	}
	if owner := k.uriOwner(newURI); owner != 0 && owner != class {
		return rep, scopeErr("rewrap", s, newURI, "", configErr("class %q: master key %q is a master key of class %q (keys never cross classification levels)", class.String(), newURI, owner.String()))
	}
	all, err := k.store.ListScopes(ctx)
	if err != nil {
		return rep, scopeErr("rewrap", s, newURI, "list scopes", err)
	}
	k.trustMasterKey(class, newURI) // what this run writes must stay readable here
	from := map[string]bool{}
	for _, st0 := range all {
		if st0.Scope.Class != class {
			continue
		}
		sc := st0.Scope
		var n, done, dead, under, moved int
		var srcs []string
		var movedClassKey bool
		_, err := k.update(ctx, "rewrap", sc, func(st *ScopeState) error {
			n, done, dead, under, moved, srcs, movedClassKey = 0, 0, 0, 0, 0, nil, false
			for i := range st.Records {
				r := &st.Records[i]
				ref := envelope.KEKRef{Class: sc.Class, Tenant: sc.Tenant, Version: r.Version}
				switch {
				case r.State == StateDestroyed:
					dead++
					continue
				case r.WrappedBy == WrapClassKey:
					under++
					continue
				case r.MasterKeyURI == newURI:
					done++
					continue
				}
				if ck := k.cachedClassKey(class); ck != nil && sc.Tenant != "" {
					src := r.MasterKeyURI
					if err := k.moveToClassKey(ctx, ck, ref, r); err != nil {
						return err
					}
					srcs = append(srcs, src)
					moved++
					continue
				}
				wrapped, err := rewrapKey(func() ([]byte, error) { return k.unwrap(ctx, ref, r) },
					func(raw []byte) ([]byte, error) { return k.wrap(ctx, ref, newURI, raw) })
				if err != nil {
					return err
				}
				srcs = append(srcs, r.MasterKeyURI)
				r.MasterKeyURI, r.Wrapped, r.UpdatedAt = newURI, wrapped, k.stamp()
				n++
			}
			if ck := st.ClassKey; ck != nil && ck.MasterKeyURI != newURI {
				wrapped, err := rewrapKey(func() ([]byte, error) { return k.unwrapClassKey(ctx, class, ck) },
					func(raw []byte) ([]byte, error) { return k.wrapClassKey(ctx, class, newURI, raw) })
				if err != nil {
					return err
				}
				srcs = append(srcs, ck.MasterKeyURI)
				st.ClassKey = &WrappedClassKey{MasterKeyURI: newURI, Wrapped: wrapped, CreatedAt: ck.CreatedAt}
				movedClassKey = true
			}
			return nil
		})
		if err != nil {
			rep.From = sortedKeys(from)
			return rep, err
		}
		for _, u := range srcs {
			from[u] = true
		}
		rep.Rewrapped += n
		rep.AlreadyDone += done
		rep.Destroyed += dead
		rep.UnderClassKey += under
		rep.MovedToClassKey += moved
		rep.ClassKey = rep.ClassKey || movedClassKey
	}
	rep.From = sortedKeys(from)
	k.cfgMu.Lock()
	cc := k.cfg.Classes[class.String()]
	old := cc.MasterKey
	cc.MasterKey = newURI
	cc.PreviousMasterKeys = slices.DeleteFunc(cc.PreviousMasterKeys, func(u string) bool { return u == newURI || u == old })
	if old != newURI {
		cc.PreviousMasterKeys = append(cc.PreviousMasterKeys, old)
	}
	k.cfg.Classes[class.String()] = cc
	rep.Config = k.cfg.clone()
	k.cfgMu.Unlock()
	return rep, nil
}

// trustMasterKey adds uri to the trusted master keys of class (as a
// previous one) if it is not trusted yet.
func (k *Keyring) trustMasterKey(class envelope.Class, uri string) {
	k.cfgMu.Lock()
	defer k.cfgMu.Unlock()
	cc := k.cfg.Classes[class.String()]
	if !cc.trusts(uri) {
		cc.PreviousMasterKeys = append(cc.PreviousMasterKeys, uri)
		k.cfg.Classes[class.String()] = cc
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
