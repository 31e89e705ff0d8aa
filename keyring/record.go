package keyring

import (
	"fmt"
	"slices"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// State is the lifecycle state of one KEK version.
type State string

// The KEK states. See the package documentation for the transitions.
const (
	StateActive      State = "active"       // the primary of its scope
	StateDecryptOnly State = "decrypt-only" // opens old values only
	StateRetired     State = "retired"      // refuses to open; reversible
	StateDestroyed   State = "destroyed"    // tombstone; key material deleted
)

// Valid reports whether s is one of the four states.
func (s State) Valid() bool {
	switch s {
	case StateActive, StateDecryptOnly, StateRetired, StateDestroyed:
		return true
	}
	return false
}

// Record is one stored KEK version: metadata and the wrapped key. Wrapped
// is nil once the version is destroyed. It never holds a plaintext key.
type Record struct {
	Version      uint32
	State        State
	MasterKeyURI string // the master key Wrapped is wrapped under
	Wrapped      []byte // nil when destroyed
	CreatedAt    time.Time
	UpdatedAt    time.Time // last state or wrapping change
	DestroyedAt  time.Time // zero unless destroyed
}

// ScopeState is everything stored about one scope: its versions and which
// of them are search keys. Stores load and save it as a unit.
type ScopeState struct {
	Scope   envelope.Scope
	Records []Record // ascending by version, contiguous from 1
	Search  []uint32 // search-key versions, current first; empty if no KEK yet
}

// Primary returns the active record, or nil.
func (s *ScopeState) Primary() *Record {
	for i := range s.Records {
		if s.Records[i].State == StateActive {
			return &s.Records[i]
		}
	}
	return nil
}

// Record returns the record of version v, or nil.
func (s *ScopeState) Record(v uint32) *Record {
	if v == 0 || int(v) > len(s.Records) {
		return nil
	}
	if r := &s.Records[v-1]; r.Version == v {
		return r
	}
	for i := range s.Records {
		if s.Records[i].Version == v {
			return &s.Records[i]
		}
	}
	return nil
}

func (s *ScopeState) maxVersion() uint32 {
	if len(s.Records) == 0 {
		return 0
	}
	return s.Records[len(s.Records)-1].Version
}

func (s *ScopeState) searchRank(v uint32) int {
	return slices.Index(s.Search, v) + 1
}

// Clone returns a deep copy.
func (s *ScopeState) Clone() *ScopeState {
	out := &ScopeState{Scope: s.Scope, Records: slices.Clone(s.Records), Search: slices.Clone(s.Search)}
	for i := range out.Records {
		out.Records[i].Wrapped = slices.Clone(out.Records[i].Wrapped)
	}
	return out
}

// Check verifies the invariants every store enforces before writing:
// versions 1..n in order; valid states; exactly one active version unless
// every version is destroyed; wrapped key and master key URI present
// unless destroyed, absent once destroyed; search versions exist.
func (s *ScopeState) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: scope %s: "+format, append([]any{ErrStore, s.Scope}, args...)...)
	}
	active, live := 0, 0
	for i, r := range s.Records {
		if r.Version != uint32(i+1) {
			return bad("version %d at position %d (want versions 1..n in order)", r.Version, i+1)
		}
		if !r.State.Valid() {
			return bad("version %d has invalid state %q", r.Version, r.State)
		}
		switch r.State {
		case StateActive:
			active++
		case StateDestroyed:
			if len(r.Wrapped) != 0 {
				return bad("version %d is destroyed but still holds key material", r.Version)
			}
			continue
		}
		live++
		if len(r.Wrapped) == 0 || r.MasterKeyURI == "" {
			return bad("version %d (%s) has no wrapped key or master key URI", r.Version, r.State)
		}
	}
	if active > 1 {
		return bad("%d active versions (want exactly one primary)", active)
	}
	if live > 0 && active == 0 {
		return bad("no active version (want exactly one primary)")
	}
	seen := map[uint32]bool{}
	for _, v := range s.Search {
		if s.Record(v) == nil || seen[v] {
			return bad("search key version %d does not exist or is listed twice", v)
		}
		seen[v] = true
	}
	if len(s.Records) > 0 && len(s.Search) == 0 {
		return bad("no search key")
	}
	return nil
}

// KEKInfo is the metadata of one KEK version, as List returns it. It never
// holds key material, wrapped or not.
type KEKInfo struct {
	Ref          envelope.KEKRef
	State        State
	Primary      bool
	SearchRank   int    // 0: not a search key; 1: the current search key; 2..: older ones still live
	MasterKeyURI string // kept after destruction, for the audit trail
	CreatedAt    time.Time
	UpdatedAt    time.Time
	DestroyedAt  time.Time // zero unless destroyed
}

func infoOf(st *ScopeState, r *Record) KEKInfo {
	return KEKInfo{
		Ref:          envelope.KEKRef{Class: st.Scope.Class, Tenant: st.Scope.Tenant, Version: r.Version},
		State:        r.State,
		Primary:      r.State == StateActive,
		SearchRank:   st.searchRank(r.Version),
		MasterKeyURI: r.MasterKeyURI,
		CreatedAt:    r.CreatedAt,
		UpdatedAt:    r.UpdatedAt,
		DestroyedAt:  r.DestroyedAt,
	}
}
