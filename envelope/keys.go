package envelope

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	daead "github.com/tink-crypto/tink-go/v2/daead/subtle"
	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

// KEKSize is the size in bytes of a key-encryption key (AES-256).
const KEKSize = 32

// Scope is the unit that owns a line of KEK versions: a class, and
// optionally a tenant inside it.
type Scope struct {
	Class  Class
	Tenant string // "" when the scope is not tenant-specific
}

func (s Scope) String() string {
	if s.Tenant == "" {
		return s.Class.String()
	}
	return s.Class.String() + "/tenant=" + s.Tenant
}

// KEKRef names one version of a key-encryption key. The class and version
// are recorded in every ciphertext header; the tenant comes from the
// caller's Binding.
type KEKRef struct {
	Class   Class
	Tenant  string
	Version uint32
}

// Scope returns the scope the KEK belongs to.
func (r KEKRef) Scope() Scope { return Scope{Class: r.Class, Tenant: r.Tenant} }

func (r KEKRef) String() string { return fmt.Sprintf("%s/v%d", r.Scope(), r.Version) }

// KeySource is what a keyring implements to give the envelope its keys. The
// envelope asks for exactly one key per operation: the primary to seal, the
// version named by the header to open.
//
// Implementations must be safe for concurrent use and should cache: the
// envelope calls them once per value.
type KeySource interface {
	// PrimaryKEK returns the KEK that new values in scope are wrapped under.
	PrimaryKEK(ctx context.Context, scope Scope) (*KEK, error)
	// KEK returns the named version. It returns an error wrapping
	// ErrUnknownKey if the version does not exist, ErrKeyDestroyed if it was
	// destroyed, ErrKeyUnavailable if it cannot be obtained now.
	KEK(ctx context.Context, ref KEKRef) (*KEK, error)
	// SearchKEKs returns the KEK versions that deterministic encryption and
	// blind indexes derive their keys from. The first is used for new
	// values; any others are older versions still live during an index-key
	// transition, and equality queries cover all of them. Search keys have a
	// lifecycle of their own: rotating the primary KEK does not change them.
	SearchKEKs(ctx context.Context, scope Scope) ([]*KEK, error)
}

// KEK is an unwrapped key-encryption key version, held in memory by a
// keyring's cache. It carries the primitives built from the key, so a
// cached KEK costs no key setup per value.
//
// A KEK never prints its key: fmt, slog and encoding/json all show only its
// reference.
type KEK struct {
	ref       KEKRef
	key       []byte
	kwp       *subtle.KWP
	destroyed atomic.Bool

	mu      sync.Mutex
	derived map[string]*derivedKey
}

type derivedKey struct {
	siv    *daead.AESSIV
	sivKey []byte
	mac    []byte
	macs   sync.Pool // of hmac hashes keyed with mac
}

// NewKEK builds a KEK from 32 bytes of key material. The bytes are copied;
// the caller should zero its own copy.
func NewKEK(ref KEKRef, key []byte) (*KEK, error) {
	if !ref.Class.Encrypted() {
		return nil, fmt.Errorf("%w: KEK %s: class %s has no keys", ErrInvalidInput, ref, ref.Class)
	}
	if len(key) != KEKSize {
		return nil, fmt.Errorf("%w: KEK %s: want %d bytes of key material, got %d", ErrInvalidInput, ref, KEKSize, len(key))
	}
	k := &KEK{ref: ref, key: append([]byte(nil), key...)}
	w, err := subtle.NewKWP(k.key)
	if err != nil {
		return nil, fmt.Errorf("%w: KEK %s: key setup failed", ErrInvalidInput, ref)
	}
	k.kwp = w
	return k, nil
}

// Ref returns the reference of this KEK.
func (k *KEK) Ref() KEKRef { return k.ref }

// Destroy zeroes the key bytes this KEK holds (best effort: the expanded AES
// key schedule inside the standard library cannot be reached) and makes
// every later use fail with ErrKeyDestroyed. Caches call it on eviction.
func (k *KEK) Destroy() {
	k.destroyed.Store(true)
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.key)
	for _, d := range k.derived {
		clear(d.mac)
		clear(d.sivKey)
	}
	k.derived = nil
}

func (k *KEK) usable() error {
	if k == nil {
		return fmt.Errorf("%w: nil KEK", ErrUnknownKey)
	}
	if k.destroyed.Load() {
		return fmt.Errorf("%w: KEK %s was evicted and zeroed", ErrKeyDestroyed, k.ref)
	}
	return nil
}

// derive returns the search key derived from this KEK under label, caching
// it. info must already encode every field it binds, unambiguously.
func (k *KEK) derive(label string, info []byte) (*derivedKey, error) {
	if err := k.usable(); err != nil {
		return nil, err
	}
	cacheKey := label + "\x00" + string(info)
	k.mu.Lock()
	defer k.mu.Unlock()
	if d, ok := k.derived[cacheKey]; ok {
		return d, nil
	}
	if k.derived == nil {
		k.derived = make(map[string]*derivedKey)
	}
	d := &derivedKey{}
	switch label {
	case labelSIV:
		raw, err := hkdf.Key(sha256.New, k.key, nil, label+string(info), 64)
		if err != nil {
			return nil, fmt.Errorf("%w: KEK %s: key derivation failed", ErrInvalidInput, k.ref)
		}
		// tink's AESSIV keeps a reference to raw (its CTR half), so raw
		// lives as long as the derived key and is zeroed by Destroy.
		d.siv, err = daead.NewAESSIV(raw)
		d.sivKey = raw
		if err != nil {
			return nil, fmt.Errorf("%w: KEK %s: AES-SIV setup failed", ErrInvalidInput, k.ref)
		}
	case labelBlindIndex:
		raw, err := hkdf.Key(sha256.New, k.key, nil, label+string(info), 32)
		if err != nil {
			return nil, fmt.Errorf("%w: KEK %s: key derivation failed", ErrInvalidInput, k.ref)
		}
		d.mac = raw
	default:
		return nil, fmt.Errorf("%w: unknown derivation label", ErrInvalidInput)
	}
	k.derived[cacheKey] = d
	return d, nil
}

const redacted = "[REDACTED]"

// String shows the reference only.
func (k *KEK) String() string {
	if k == nil {
		return "KEK(nil)"
	}
	return "KEK(" + k.ref.String() + ")" + redacted
}

// GoString shows the reference only, also under %#v.
func (k *KEK) GoString() string { return k.String() }

// Format makes every fmt verb print the reference only.
func (k *KEK) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue makes slog print the reference only.
func (k *KEK) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON makes encoding/json print the reference only.
func (k *KEK) MarshalJSON() ([]byte, error) { return []byte(`"` + k.String() + `"`), nil }
