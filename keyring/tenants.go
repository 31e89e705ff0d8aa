package keyring

import (
	"context"
	"crypto/rand"
	"slices"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// tenantBatch is how many scopes EnsureTenants creates per store call.
const tenantBatch = 500

// TenantsReport says what EnsureTenants did.
type TenantsReport struct {
	Created  []KEKInfo // version 1 of each scope created now
	Existing int       // scopes that held keys already, left alone
}

// EnsureTenants provisions tenants ahead of their traffic: it creates
// version 1 of the scope of every tenant in every tenant-scoped class
// this process may use (like EnsureScope for each), and leaves scopes that
// exist alone. Since
// tenant KEKs are wrapped by the class key, this makes no KMS call per
// tenant (at most one per class, to unwrap or create its class key); with
// a store that implements ScopeCreator (GormStore, FileStore) it writes
// the scopes a few hundred per transaction, instead of one transaction
// each. It is idempotent: rerun it after an interruption. Each scope
// created is audited (kek.created).
//
// Creating a tenant's scope on first use (PrimaryKEK, SearchKEKs) needs no
// provisioning at all and stays the way for tenants that arrive one at a
// time; EnsureTenants is for the thousands an import or a migration
// brings at once.
func (k *Keyring) EnsureTenants(ctx context.Context, tenants []string) (TenantsReport, error) {
	var rep TenantsReport
	seen := map[string]bool{}
	var list []string
	for _, t := range tenants {
		if t == "" {
			return rep, scopeErr("ensure-tenants", envelope.Scope{}, "", "empty tenant name (the class-wide scope is created by Init)", envelope.ErrInvalidInput)
		}
		if !seen[t] {
			seen[t] = true
			list = append(list, t)
		}
	}
	var classes []envelope.Class
	for c, scoped := range k.scoped {
		if scoped && k.allowed(c) {
			classes = append(classes, c)
		}
	}
	slices.Sort(classes)
	for _, c := range classes {
		for batch := range slices.Chunk(list, tenantBatch) {
			if err := k.ensureTenantBatch(ctx, c, batch, &rep); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

// ensureTenantBatch creates the scopes of tenants in class c: new scopes
// in bulk when it can, the others through ensureScope (which also detects
// a scope that vanished from under this process).
func (k *Keyring) ensureTenantBatch(ctx context.Context, c envelope.Class, tenants []string, rep *TenantsReport) error {
	if _, err := k.scope("ensure", envelope.Scope{Class: c, Tenant: tenants[0]}); err != nil {
		return err
	}
	if err := k.allow(ctx, "ensure", envelope.KEKRef{Class: c}, accessEncrypt); err != nil {
		return err
	}
	rest := tenants
	if creator, ok := k.store.(ScopeCreator); ok {
		macKey, err := k.sealingKey(ctx, c)
		if err != nil {
			return err
		}
		if ck := k.cachedClassKey(c); macKey != nil && ck != nil {
			rest, err = k.createTenants(ctx, creator, c, ck, macKey, tenants, rep)
			if err != nil {
				return err
			}
		}
	}
	for _, t := range rest {
		info, made, err := k.ensureScope(ctx, envelope.Scope{Class: c, Tenant: t})
		if err != nil {
			return err
		}
		if made {
			rep.Created = append(rep.Created, info)
		} else {
			rep.Existing++
		}
	}
	return nil
}

// createTenants builds the sealed first state of each tenant's scope (a
// KEK generated and wrapped by the class key ck, epoch 1, MAC) and has
// the store create those that do not exist. It returns the tenants left
// for ensureScope: scopes the store did not create, and scopes this
// process has seen before (ensureScope verifies them).
func (k *Keyring) createTenants(ctx context.Context, creator ScopeCreator, c envelope.Class, ck *classKeyEntry, macKey []byte, tenants []string, rep *TenantsReport) ([]string, error) {
	var rest []string
	var states []*ScopeState
	for _, t := range tenants {
		s := envelope.Scope{Class: c, Tenant: t}
		if k.epochFloor(s) > 0 {
			rest = append(rest, t)
			continue
		}
		ref := envelope.KEKRef{Class: c, Tenant: t, Version: 1}
		raw := make([]byte, envelope.KEKSize)
		if _, err := rand.Read(raw); err != nil {
			return nil, keyErr("generate", ref, "", "crypto/rand failed", err)
		}
		wrapped, err := k.wrapWithClassKey(ck, ref, raw)
		clear(raw) // not cached: provisioning is not use
		if err != nil {
			return nil, err
		}
		now := k.stamp()
		st := &ScopeState{Scope: s, Search: []uint32{1}, Epoch: 1, Records: []Record{{
			Version: 1, State: StateActive, WrappedBy: WrapClassKey, Wrapped: wrapped, CreatedAt: now, UpdatedAt: now}}}
		st.MAC = k.stateMAC(macKey, st)
		states = append(states, st)
	}
	created, err := creator.CreateScopes(ctx, states)
	if err != nil {
		return nil, scopeErr("ensure-tenants", envelope.Scope{Class: c}, "", "", err)
	}
	done := map[envelope.Scope]bool{}
	for _, s := range created {
		done[s] = true
	}
	for _, st := range states {
		if !done[st.Scope] {
			rest = append(rest, st.Scope.Tenant)
			continue
		}
		k.mu.Lock()
		k.epochs[st.Scope] = max(k.epochs[st.Scope], st.Epoch)
		k.mu.Unlock()
		info := infoOf(st, &st.Records[0])
		rep.Created = append(rep.Created, info)
		k.emit(ctx, audit.KEKCreated, info.Ref, "", nil, nil)
	}
	return rest, nil
}
