package keyring

import (
	"context"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Store persists KEK records. Two implementations come with the package:
// GormStore (tables in the application's own database; the default) and
// FileStore (one JSON file). A Store never sees a plaintext key.
//
// Implementations must be safe for concurrent use by goroutines and by
// processes sharing the same database or file. A store is not trusted: the
// keyring verifies what it returns (ScopeState.MAC, Epoch, the invariants)
// and refuses what it did not write. A store must keep every field of a
// ScopeState exactly as given (times at least to the millisecond) and
// return states that one write produced, never a mix of two.
type Store interface {
	// LoadScope returns the stored state of scope. A scope never written
	// returns an empty state (no records) and no error.
	LoadScope(ctx context.Context, scope envelope.Scope) (*ScopeState, error)
	// ListScopes returns the state of every stored scope that holds
	// anything (records, a MAC or a class key).
	ListScopes(ctx context.Context) ([]*ScopeState, error)
	// UpdateScope reads the current state of scope and calls fn with it
	// inside a transaction serialized against every other UpdateScope of
	// the same scope, in this process and in others. When fn returns nil
	// the state fn left is checked (ScopeState.Check, and no version
	// deleted, reactivated or revived) and written atomically; when fn returns an error nothing is written and that
	// error is returned. fn may be called more than once (retries after a
	// conflict); it must start from the state it is given each time.
	// Records are never deleted: fn may change records and append new
	// versions.
	UpdateScope(ctx context.Context, scope envelope.Scope, fn func(*ScopeState) error) error
}

// ScopeCreator is implemented by stores that can create many new scopes
// at once: Keyring.EnsureTenants uses it to provision thousands of tenants
// in a few transactions instead of one per tenant. GormStore and
// FileStore implement it; a store without it gets one UpdateScope per
// scope.
type ScopeCreator interface {
	// CreateScopes stores each of states whose scope was never written
	// and leaves every other scope alone, in one transaction (a failure
	// leaves every scope untouched). It returns the scopes it created; it
	// may skip one that was never written but has left a trace (the
	// caller then creates it with UpdateScope). Each state must pass
	// ScopeState.Check, or nothing is written. Concurrent creators, in any
	// process, never create a scope twice: the one that loses leaves it
	// alone.
	CreateScopes(ctx context.Context, states []*ScopeState) ([]envelope.Scope, error)
}
