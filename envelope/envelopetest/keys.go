// Package envelopetest provides an in-memory envelope.KeySource for tests
// and examples. It has no master key and no persistence: use package
// keyring in applications.
package envelopetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Keys is an in-memory KeySource. The zero value is not usable; call New.
type Keys struct {
	mu      sync.Mutex
	keks    map[envelope.KEKRef]*envelope.KEK
	primary map[envelope.Scope]uint32
	search  map[envelope.Scope][]uint32
	// primaryKEKs and searchKEKs cache what PrimaryKEK and SearchKEKs
	// return, as a keyring's cache would; any change of versions drops
	// them.
	primaryKEKs map[envelope.Scope]*envelope.KEK
	searchKEKs  map[envelope.Scope][]*envelope.KEK
	calls       int
}

// New returns a KeySource that creates version 1 of a scope's KEK on first
// use. Version 1 is also the scope's search key.
func New() *Keys {
	return &Keys{
		keks:        map[envelope.KEKRef]*envelope.KEK{},
		primary:     map[envelope.Scope]uint32{},
		search:      map[envelope.Scope][]uint32{},
		primaryKEKs: map[envelope.Scope]*envelope.KEK{},
		searchKEKs:  map[envelope.Scope][]*envelope.KEK{},
	}
}

// Rotate adds a new primary version to scope and returns it. Search keys are
// unchanged.
func (k *Keys) Rotate(scope envelope.Scope) uint32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ensure(scope)
	v := k.primary[scope] + 1
	k.add(envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: v})
	k.primary[scope] = v
	clear(k.primaryKEKs)
	return v
}

// RotateSearch makes the current primary the first search key, keeping the
// previous search keys live after it.
func (k *Keys) RotateSearch(scope envelope.Scope) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ensure(scope)
	k.search[scope] = append([]uint32{k.primary[scope]}, k.search[scope]...)
	clear(k.searchKEKs)
}

// Forget removes a version, as if it had been destroyed.
func (k *Keys) Forget(ref envelope.KEKRef) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kek, ok := k.keks[ref]; ok {
		kek.Destroy()
		delete(k.keks, ref)
		clear(k.primaryKEKs)
		clear(k.searchKEKs)
	}
}

// Calls reports how many times the KeySource methods were called.
func (k *Keys) Calls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

func (k *Keys) add(ref envelope.KEKRef) {
	raw := make([]byte, envelope.KEKSize)
	if _, err := rand.Read(raw); err != nil {
		panic(err)
	}
	kek, err := envelope.NewKEK(ref, raw)
	if err != nil {
		panic(err)
	}
	clear(raw)
	k.keks[ref] = kek
}

func (k *Keys) ensure(scope envelope.Scope) {
	if _, ok := k.primary[scope]; ok || !scope.Class.Encrypted() {
		return
	}
	k.add(envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: 1})
	k.primary[scope] = 1
	k.search[scope] = []uint32{1}
}

// PrimaryKEK implements envelope.KeySource.
func (k *Keys) PrimaryKEK(_ context.Context, scope envelope.Scope) (*envelope.KEK, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	if kek, ok := k.primaryKEKs[scope]; ok {
		return kek, nil
	}
	if !scope.Class.Encrypted() {
		return nil, fmt.Errorf("%w: class %s has no keys", envelope.ErrInvalidInput, scope.Class)
	}
	k.ensure(scope)
	kek, ok := k.keks[envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: k.primary[scope]}]
	if ok {
		k.primaryKEKs[scope] = kek
	}
	return kek, nil
}

// KEK implements envelope.KeySource.
func (k *Keys) KEK(_ context.Context, ref envelope.KEKRef) (*envelope.KEK, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	kek, ok := k.keks[ref]
	if !ok {
		return nil, fmt.Errorf("%w: KEK %s", envelope.ErrUnknownKey, ref)
	}
	return kek, nil
}

// SearchKEKs implements envelope.KeySource.
func (k *Keys) SearchKEKs(_ context.Context, scope envelope.Scope) ([]*envelope.KEK, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	if out, ok := k.searchKEKs[scope]; ok {
		return out, nil
	}
	if !scope.Class.Encrypted() {
		return nil, fmt.Errorf("%w: class %s has no keys", envelope.ErrInvalidInput, scope.Class)
	}
	k.ensure(scope)
	var out []*envelope.KEK
	for _, v := range k.search[scope] {
		if kek, ok := k.keks[envelope.KEKRef{Class: scope.Class, Tenant: scope.Tenant, Version: v}]; ok {
			out = append(out, kek)
		}
	}
	k.searchKEKs[scope] = out
	return out, nil
}
