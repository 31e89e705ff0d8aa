package keyring

import (
	"context"
	"fmt"
	"slices"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// UpgradeOption configures Upgrade.
type UpgradeOption func(*upgradeOptions)

type upgradeOptions struct {
	aliases map[string]string // stored URI → configured URI
}

// WithMasterKeyAlias tells Upgrade that records stored under the master
// key URI stored name the master key the configuration calls configured
// (a trusted URI of the same class): Upgrade records them under
// configured, after checking that one of them unwraps under it. The CLI
// uses it for the relative local:// paths an earlier 'fieldcrypt init'
// stored, which it now resolves to absolute ones.
func WithMasterKeyAlias(stored, configured string) UpgradeOption {
	return func(o *upgradeOptions) {
		if o.aliases == nil {
			o.aliases = map[string]string{}
		}
		o.aliases[stored] = configured
	}
}

// UpgradeReport says what Upgrade did, per configured class.
type UpgradeReport struct {
	Classes []ClassUpgrade
}

// ClassUpgrade is what Upgrade did in one class.
type ClassUpgrade struct {
	Class           envelope.Class
	ClassKeyCreated bool             // the class had no class key: one was generated
	Sealed          []envelope.Scope // scopes that had no MAC: sealed now, as they were
	AlreadySealed   int              // scopes whose MAC verified: left alone
	Renamed         int              // records moved from an alias to its configured URI
	// MovedToClassKey counts tenant KEK versions moved from the master key
	// to the class key (one KMS unwrap each, once): afterwards a process
	// unwraps them without KMS calls.
	MovedToClassKey int
}

// Upgrade seals a key store written before keyrings were sealed: for every
// configured class it creates the class key (if there is none) and MACs
// every scope of the class as it is now. The operator vouches for that
// state: run Upgrade once, from a trusted host, when nothing suggests the
// store was tampered with (fieldcrypt keys list shows what will be
// vouched for). Until then a keyring refuses the unsealed store
// (ErrUnsealed) unless Config.AllowUnsealedStore is set.
//
// It refuses (and audits) what no honest store holds: a live version
// under a master key the configuration does not trust (ErrUntrustedKey:
// list it in PreviousMasterKeys if it is yours), broken invariants, a
// sealed scope whose MAC does not verify, or sealed scopes in a class
// whose class key is gone (ErrTampered). It is idempotent: sealed scopes
// are left alone, so an interrupted run is finished by running it again.
// New keyrings need no upgrade: they are sealed from their first write.
func (k *Keyring) Upgrade(ctx context.Context, opts ...UpgradeOption) (UpgradeReport, error) {
	var o upgradeOptions
	for _, opt := range opts {
		opt(&o)
	}
	var rep UpgradeReport
	classes := make([]envelope.Class, 0, len(k.scoped))
	for c := range k.scoped {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	for _, c := range classes {
		if err := k.allow(ctx, "upgrade", envelope.KEKRef{Class: c}, accessDecrypt); err != nil {
			return rep, err
		}
	}
	for _, c := range classes {
		cu, err := k.upgradeClass(ctx, c, o)
		rep.Classes = append(rep.Classes, cu)
		k.emit(ctx, audit.KeyringSealed, envelope.KEKRef{Class: c}, k.classURI(c), err, map[string]int64{
			"class_key_created": b2i(cu.ClassKeyCreated), "scopes_sealed": int64(len(cu.Sealed)),
			"scopes_already_sealed": int64(cu.AlreadySealed), "records_renamed": int64(cu.Renamed), "moved_to_class_key": int64(cu.MovedToClassKey)})
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (k *Keyring) upgradeClass(ctx context.Context, c envelope.Class, o upgradeOptions) (ClassUpgrade, error) {
	cu := ClassUpgrade{Class: c}
	home := envelope.Scope{Class: c}
	all, err := k.store.ListScopes(ctx)
	if err != nil {
		return cu, scopeErr("upgrade", home, k.classURI(c), "list scopes", err)
	}
	scopes := []envelope.Scope{home} // the class key first
	for _, st := range all {
		if st.Scope.Class == c && st.Scope != home {
			scopes = append(scopes, st.Scope)
		}
	}
	var macKey []byte
	for _, s := range scopes {
		var sealed, already bool
		var renamed, moved int
		floor := k.epochFloor(s)
		var final *ScopeState
		var created *classKeyEntry
		err := k.store.UpdateScope(ctx, s, func(st *ScopeState) error {
			final, created, sealed, already, renamed, moved = nil, nil, false, false, 0, 0
			if s == home {
				m, e, err := k.upgradeClassKey(ctx, st, sealedScopes(all, c))
				if err != nil {
					return err
				}
				macKey, created = m, e
			}
			var err error
			sealed, already, renamed, moved, err = k.vouch(ctx, st, macKey, floor, o)
			final = st
			return err
		})
		if err != nil {
			return cu, k.opErr("upgrade", s, "", err)
		}
		if created != nil { // cached once stored, never before
			k.putClassKey(c, created)
			cu.ClassKeyCreated = true
		}
		if sealed {
			cu.Sealed = append(cu.Sealed, s)
		}
		if already {
			cu.AlreadySealed++
		}
		cu.Renamed += renamed
		cu.MovedToClassKey += moved
		k.setScope(s, final.Clone(), k.now())
	}
	return cu, nil
}

// sealedScopes reports whether any scope of class c is sealed.
func sealedScopes(all []*ScopeState, c envelope.Class) bool {
	return slices.ContainsFunc(all, func(st *ScopeState) bool { return st.Scope.Class == c && st.sealed() })
}

// upgradeClassKey returns the MAC key of the class whose class-wide state
// is st, creating the class key in st if the class has none (then it also
// returns the new entry, for the caller to cache once it is stored).
func (k *Keyring) upgradeClassKey(ctx context.Context, st *ScopeState, sealedElsewhere bool) ([]byte, *classKeyEntry, error) {
	c := st.Scope.Class
	if st.ClassKey != nil {
		m, err := k.classMAC(ctx, c, st)
		return m, nil, err
	}
	if st.sealed() || sealedElsewhere {
		err := scopeErr("upgrade", st.Scope, k.classURI(c), "the class has sealed scopes but no class key: the class key was deleted (restore the key store from a backup you trust)", envelope.ErrKeyUnavailable, ErrTampered)
		k.emitTamper(ctx, st.Scope, 0, "", err)
		return nil, nil, err
	}
	ck, e, err := k.newClassKey(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	st.ClassKey = ck
	return e.macKey, e, nil
}

// vouch seals st as it is, after the checks an honest store passes: a
// sealed state must verify (and is left alone unless an alias renames a
// record or a tenant KEK moves to the class key); an unsealed one must
// keep the invariants and name only trusted master keys. Live tenant KEKs
// wrapped by the master key move to the class key.
func (k *Keyring) vouch(ctx context.Context, st *ScopeState, macKey []byte, floor uint64, o upgradeOptions) (sealed, already bool, renamed, moved int, err error) {
	refuse := func(reason string, errs ...error) error {
		err := scopeErr("upgrade", st.Scope, k.classURI(st.Scope.Class), reason+": not vouching for it", append([]error{envelope.ErrKeyUnavailable, ErrTampered}, errs...)...)
		k.emitTamper(ctx, st.Scope, 0, "", err)
		return err
	}
	switch {
	case len(st.MAC) > 0:
		if _, err := k.verify(ctx, "upgrade", st, floor); err != nil {
			return false, false, 0, 0, err
		}
		already = true
	case floor > 0:
		return false, false, 0, 0, refuse(fmt.Sprintf("the scope lost its MAC (this process saw epoch %d)", floor))
	default:
		if err := st.Check(); err != nil {
			return false, false, 0, 0, refuse("the stored state breaks the keyring's invariants", err)
		}
	}
	c := st.Scope.Class
	for i := range st.Records {
		r := &st.Records[i]
		ref := envelope.KEKRef{Class: c, Tenant: st.Scope.Tenant, Version: r.Version}
		if r.WrappedBy == WrapClassKey {
			continue // the MAC (verified above) vouches for it; nothing else can
		}
		if to, ok := o.aliases[r.MasterKeyURI]; ok && to != r.MasterKeyURI {
			if !k.trusts(c, to) {
				return false, false, 0, 0, keyErr("upgrade", ref, to, fmt.Sprintf("alias target of %s is not a master key of class %s", r.MasterKeyURI, c), ErrInvalidConfig)
			}
			if r.State != StateDestroyed {
				probe := *r
				probe.MasterKeyURI = to
				raw, err := k.unwrap(ctx, ref, &probe)
				if err != nil {
					return false, false, 0, 0, keyErr("upgrade", ref, to, "the key stored as "+r.MasterKeyURI+" does not unwrap under its alias", ErrInvalidConfig, err)
				}
				clear(raw)
			}
			r.MasterKeyURI = to
			renamed++
		} else if r.State != StateDestroyed && !k.trusts(c, r.MasterKeyURI) {
			err := keyErr("upgrade", ref, r.MasterKeyURI, k.untrustedReason(c, r.MasterKeyURI)+": not vouching for it", envelope.ErrKeyUnavailable, ErrUntrustedKey)
			k.emitTamper(ctx, st.Scope, r.Version, r.MasterKeyURI, err)
			return false, false, 0, 0, err
		}
		if ck := k.cachedClassKey(c); ck != nil && ref.Tenant != "" && r.State != StateDestroyed {
			if err := k.moveToClassKey(ctx, ck, ref, r); err != nil {
				return false, false, 0, 0, err
			}
			moved++
		}
	}
	if already && renamed == 0 && moved == 0 {
		return false, true, 0, 0, nil
	}
	st.Epoch++
	st.MAC = k.stateMAC(macKey, st)
	return !already, already, renamed, moved, nil
}
