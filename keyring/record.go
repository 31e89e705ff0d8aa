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

// KeyWrap says what a stored KEK is wrapped under.
type KeyWrap string

// The two ways a KEK is stored.
const (
	// WrapMasterKey: wrapped by the class's master key, in the KMS (under
	// Record.MasterKeyURI, bound to an encryption context naming keyring,
	// class, tenant and version). Class-wide KEKs always; tenant KEKs
	// created before class-key wrapping existed, or in a class that is not
	// sealed yet. The empty string, as every store holds it.
	WrapMasterKey KeyWrap = ""
	// WrapClassKey: wrapped locally by the class key (AES-256-KWP under a
	// key derived from it for this keyring, class, tenant and version; see
	// docs/threat-model.md). Tenant KEKs: unwrapping them costs no KMS call
	// once the class key is unwrapped, however many tenants there are.
	// Record.MasterKeyURI is empty.
	WrapClassKey KeyWrap = "class-key"
)

// Valid reports whether w is one of the two wrappings.
func (w KeyWrap) Valid() bool { return w == WrapMasterKey || w == WrapClassKey }

func (w KeyWrap) String() string {
	if w == WrapMasterKey {
		return "master-key"
	}
	return string(w)
}

// Record is one stored KEK version: metadata and the wrapped key. Wrapped
// is nil once the version is destroyed. It never holds a plaintext key.
type Record struct {
	Version      uint32
	State        State
	WrappedBy    KeyWrap // what Wrapped is wrapped under
	MasterKeyURI string  // the master key Wrapped is wrapped under; empty when WrappedBy is WrapClassKey
	Wrapped      []byte  // nil when destroyed
	CreatedAt    time.Time
	UpdatedAt    time.Time // last state or wrapping change
	DemotedAt    time.Time // when it stopped being the primary (Rotate); zero if it is the primary, or was demoted before this field existed
	DestroyedAt  time.Time // zero unless destroyed
}

// WrappedClassKey is a class's class key as stored: 32 random bytes,
// wrapped by the class's master key under an encryption context naming
// the keyring, the class and the purpose (ECPurpose = "class-key"). The
// keyring derives from it the key that authenticates every scope state of
// the class (ScopeState.MAC).
type WrappedClassKey struct {
	MasterKeyURI string
	Wrapped      []byte
	CreatedAt    time.Time
}

// ScopeState is everything stored about one scope: its versions, which of
// them are search keys, and the fields that let the keyring detect a
// state it did not write. Stores load and save it as a unit and keep
// every field exactly as given.
type ScopeState struct {
	Scope   envelope.Scope
	Records []Record // ascending by version, contiguous from 1
	Search  []uint32 // search-key versions, current first; empty if no KEK yet
	// Epoch counts the keyring's writes of this scope: every change made
	// through the keyring adds one. A process refuses an epoch lower than
	// one it has seen (a rolled-back state).
	Epoch uint64
	// MAC authenticates the whole state, Epoch included, under a key
	// derived from the class key (HMAC-SHA256). Nil in a store written
	// before keyrings were sealed (see Keyring.Upgrade).
	MAC []byte
	// ClassKey is the class key; only the class-wide scope (tenant "")
	// holds it, and only once the class is sealed.
	ClassKey *WrappedClassKey
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

// sealed reports whether the state carries integrity protection.
func (s *ScopeState) sealed() bool { return len(s.MAC) != 0 || s.Epoch != 0 }

// empty reports whether the scope was never written.
func (s *ScopeState) empty() bool {
	return len(s.Records) == 0 && len(s.Search) == 0 && !s.sealed() && s.ClassKey == nil
}

// Clone returns a deep copy.
func (s *ScopeState) Clone() *ScopeState {
	out := &ScopeState{Scope: s.Scope, Records: slices.Clone(s.Records), Search: slices.Clone(s.Search), Epoch: s.Epoch, MAC: slices.Clone(s.MAC)}
	for i := range out.Records {
		out.Records[i].Wrapped = slices.Clone(out.Records[i].Wrapped)
	}
	if s.ClassKey != nil {
		ck := *s.ClassKey
		ck.Wrapped = slices.Clone(ck.Wrapped)
		out.ClassKey = &ck
	}
	return out
}

// Check verifies the invariants every store enforces before writing and
// the keyring verifies on every load: versions 1..n in order; valid
// states; the active version is the highest version not destroyed (Rotate
// is the only way to a new primary: there is no "promote"), and there is
// one unless every version is destroyed; wrapped key and master key URI
// present unless destroyed, absent once destroyed; search versions exist;
// a class key only in the class-wide scope; KEKs wrapped by the class key
// only in tenant scopes, with no master key URI.
func (s *ScopeState) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: scope %s: "+format, append([]any{ErrStore, s.Scope}, args...)...)
	}
	active, live := 0, 0
	var highestLive uint32
	for i, r := range s.Records {
		if r.Version != uint32(i+1) {
			return bad("version %d at position %d (want versions 1..n in order)", r.Version, i+1)
		}
		if !r.State.Valid() {
			return bad("version %d has invalid state %q", r.Version, r.State)
		}
		if !r.WrappedBy.Valid() {
			return bad("version %d has an unknown wrapping %q", r.Version, r.WrappedBy)
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
		highestLive = r.Version
		switch r.WrappedBy {
		case WrapMasterKey:
			if len(r.Wrapped) == 0 || r.MasterKeyURI == "" {
				return bad("version %d (%s) has no wrapped key or master key URI", r.Version, r.State)
			}
		case WrapClassKey:
			if s.Scope.Tenant == "" {
				return bad("version %d is wrapped by the class key outside a tenant scope", r.Version)
			}
			if len(r.Wrapped) != classWrappedSize || r.MasterKeyURI != "" {
				return bad("version %d is wrapped by the class key but holds %d bytes (want %d) or names a master key", r.Version, len(r.Wrapped), classWrappedSize)
			}
		}
	}
	if active > 1 {
		return bad("%d active versions (want exactly one primary)", active)
	}
	if live > 0 && active == 0 {
		return bad("no active version (want exactly one primary)")
	}
	if p := s.Primary(); p != nil && p.Version != highestLive {
		return bad("version %d is active but version %d is newer and not destroyed (only a rotation makes a new primary)", p.Version, highestLive)
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
	if ck := s.ClassKey; ck != nil {
		if s.Scope.Tenant != "" {
			return bad("a class key outside the class-wide scope")
		}
		if len(ck.Wrapped) == 0 || ck.MasterKeyURI == "" {
			return bad("class key without wrapped key or master key URI")
		}
	}
	if len(s.MAC) != 0 && len(s.MAC) != macSize {
		return bad("MAC of %d bytes (want %d)", len(s.MAC), macSize)
	}
	return nil
}

// checkTransition verifies that after can follow before, in one update or
// several: no version deleted or renumbered, no version made active again
// (only a rotation makes a primary, and it makes a new version), and
// destroyed is final.
func checkTransition(before, after *ScopeState) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: scope %s: "+format, append([]any{ErrStore, after.Scope}, args...)...)
	}
	if len(after.Records) < len(before.Records) {
		return bad("%d versions where there were %d (versions are never deleted)", len(after.Records), len(before.Records))
	}
	for i, b := range before.Records {
		a := after.Records[i]
		if a.Version != b.Version {
			return bad("version %d renumbered to %d", b.Version, a.Version)
		}
		if a.State != b.State && (b.State == StateDestroyed || a.State == StateActive) {
			return bad("version %d went from %s to %s", b.Version, b.State, a.State)
		}
	}
	return nil
}

// KEKInfo is the metadata of one KEK version, as List returns it. It never
// holds key material, wrapped or not.
type KEKInfo struct {
	Ref          envelope.KEKRef
	State        State
	Primary      bool
	SearchRank   int     // 0: not a search key; 1: the current search key; 2..: older ones still live
	WrappedBy    KeyWrap // the master key (in the KMS) or the class key
	MasterKeyURI string  // when WrappedBy is WrapMasterKey; kept after destruction, for the audit trail
	CreatedAt    time.Time
	UpdatedAt    time.Time
	DemotedAt    time.Time // when it stopped being the primary; zero if it is the primary or was demoted before this was recorded
	DestroyedAt  time.Time // zero unless destroyed
}

// InUseUntil returns when every process has stopped sealing under this
// version: DemotedAt (UpdatedAt for versions demoted before DemotedAt was
// recorded) plus MaxStateAge plus DemotionSlack. Destroy and Retire refuse
// before then unless forced. It is zero for the primary (in use) and for
// destroyed versions.
func (i KEKInfo) InUseUntil() time.Time {
	if i.State == StateActive || i.State == StateDestroyed {
		return time.Time{}
	}
	return inUseUntil(i.DemotedAt, i.UpdatedAt)
}

func inUseUntil(demoted, updated time.Time) time.Time {
	if demoted.IsZero() {
		demoted = updated
	}
	return demoted.Add(maxStateAge + demotionSlack)
}

func infoOf(st *ScopeState, r *Record) KEKInfo {
	return KEKInfo{
		Ref:          envelope.KEKRef{Class: st.Scope.Class, Tenant: st.Scope.Tenant, Version: r.Version},
		State:        r.State,
		Primary:      r.State == StateActive,
		SearchRank:   st.searchRank(r.Version),
		WrappedBy:    r.WrappedBy,
		MasterKeyURI: r.MasterKeyURI,
		CreatedAt:    r.CreatedAt,
		UpdatedAt:    r.UpdatedAt,
		DemotedAt:    r.DemotedAt,
		DestroyedAt:  r.DestroyedAt,
	}
}
