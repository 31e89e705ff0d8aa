package envelope

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fieldcrypt/fieldcrypt/envelope/internal/kwp"
	"github.com/fieldcrypt/fieldcrypt/envelope/internal/siv"
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
	// The envelope neither changes nor keeps the slice, so an
	// implementation may return the same cached slice to every caller.
	SearchKEKs(ctx context.Context, scope Scope) ([]*KEK, error)
}

// KEK is an unwrapped key-encryption key version, held in memory by a
// keyring's cache. It carries the primitives built from the key, so a
// cached KEK costs no key setup per value.
//
// Every operation that uses a KEK holds a reference to it while it runs.
// Destroy only marks the KEK: the key bytes are cleared by whoever drops the
// last reference, so key material is never cleared under a running
// operation, and an operation that races a Destroy either completes under
// the real key or fails with ErrKeyDestroyed. A seal (randomized,
// deterministic, or a blind index) whose KEK was destroyed while it ran
// fails with ErrKeyDestroyed too: the keyring destroys a KEK when its
// version is crypto-shredded, and a value sealed under it would be
// unreadable for good.
//
// A KEK never prints its key: fmt, slog and encoding/json all show only its
// reference.
type KEK struct {
	ref KEKRef
	// key is the raw KEK. New values use it only as HKDF input; it is the
	// AES-KWP key of suite 0x01 values, which stay readable and rewrappable.
	key []byte
	// wrapKey is K_wrap, derived from key (see kekWrapInfo): the AES-KWP
	// key of suite 0x03 values. wrapKeySIV is K_wrap_siv, the AES-SIV key
	// of suite 0x04 values.
	wrapKey    []byte
	wrapKeySIV []byte
	kwp        *kwp.KWP // under key: suite 0x01
	wrapKWP    *kwp.KWP // under wrapKey: suite 0x03
	wrapSIV    *siv.SIV // under wrapKeySIV: suite 0x04
	// state is refs<<2 | wiped<<1 | destroyed: one atomic word, so taking
	// and dropping a reference costs one atomic add each.
	state atomic.Int64

	// derived maps the HKDF info of each search key derived so far to the
	// key. Readers load it without a lock: it is replaced, never changed,
	// under mu. An operation holds a reference while it uses a derived
	// key, so wipeBytes (which runs only when none is held) never clears
	// one in use.
	derived atomic.Pointer[map[string]*derivedKey]
	mu      sync.Mutex
}

// Bits of KEK.state.
const (
	kekDestroyed = 1 << 0 // Destroy was called: no new reference is granted
	kekWiped     = 1 << 1 // the key bytes were cleared (exactly once)
	kekRefOne    = 1 << 2 // one reference
)

type derivedKey struct {
	siv    *siv.SIV
	sivKey []byte
	mac    []byte
	macs   sync.Pool // of *macState keyed with mac
}

// NewKEK builds a KEK from 32 bytes of key material. The bytes are copied;
// the caller should zero its own copy.
func NewKEK(ref KEKRef, key []byte) (*KEK, error) {
	if !ref.Class.Encrypted() {
		return nil, fmt.Errorf("%w: KEK %s: class %s has no keys", ErrInvalidInput, ref, ref.Class)
	}
	if ref.Version == 0 {
		return nil, fmt.Errorf("%w: KEK %s: versions start at 1", ErrInvalidInput, ref)
	}
	if len(key) != KEKSize {
		return nil, fmt.Errorf("%w: KEK %s: want %d bytes of key material, got %d", ErrInvalidInput, ref, KEKSize, len(key))
	}
	k := &KEK{ref: ref, key: append([]byte(nil), key...)}
	wrapKey, err := hkdf.Key(sha256.New, k.key, nil, string(kekWrapInfo(labelKEKWrap, ref)), KEKSize)
	if err == nil {
		k.wrapKey = wrapKey
		k.wrapKeySIV, err = hkdf.Key(sha256.New, k.key, nil, string(kekWrapInfo(labelKEKWrapSIV, ref)), 2*KEKSize)
	}
	if err != nil {
		k.wipeBytes()
		return nil, fmt.Errorf("%w: KEK %s: key derivation failed", ErrInvalidInput, ref)
	}
	if k.kwp, err = kwp.New(k.key); err == nil {
		if k.wrapKWP, err = kwp.New(k.wrapKey); err == nil {
			k.wrapSIV, err = siv.New(k.wrapKeySIV)
		}
	}
	if err != nil {
		k.wipeBytes()
		return nil, fmt.Errorf("%w: KEK %s: key setup failed", ErrInvalidInput, ref)
	}
	return k, nil
}

// kekWrapInfo is the HKDF info of K_wrap (label labelKEKWrap) and
// K_wrap_siv (labelKEKWrapSIV): label || class byte || LP(tenant) ||
// uint32be(version).
func kekWrapInfo(label string, ref KEKRef) []byte {
	info := make([]byte, 0, len(label)+1+4+len(ref.Tenant)+4)
	info = append(info, label...)
	info = append(info, byte(ref.Class))
	info = appendLP(info, ref.Tenant)
	return binary.BigEndian.AppendUint32(info, ref.Version)
}

// wrapScratch is the size of the scratch memory wrapDEK and unwrapDEK
// need (see internal/kwp and internal/siv: it must be heap memory the
// caller already has, so that the block cipher's interface calls make no
// allocation).
const wrapScratch = siv.ScratchSize

// wrapDEK wraps dek for the randomized suite s into dst[:s.wrappedSize()]:
// AES-KWP under the raw KEK (0x01) or K_wrap (0x03), AES-SIV under
// K_wrap_siv (0x04). The caller holds a reference to k.
func (k *KEK) wrapDEK(s Suite, dst []byte, dek *[dekSize]byte, scratch []byte) error {
	switch s {
	case SuiteRandomized:
		return k.kwp.Wrap(dst, dek[:], scratch)
	case SuiteRandomizedDerivedWrap:
		return k.wrapKWP.Wrap(dst, dek[:], scratch)
	case SuiteRandomizedSIVWrap:
		k.wrapSIV.Seal(dst, dek[:], nil, scratch)
		return nil
	}
	return fmt.Errorf("%w: suite %s has no data key", ErrInvalidInput, s)
}

// unwrapDEK unwraps the data key of a randomized value of suite s under k
// into dek. A data key of any size but 32 bytes is an authentication
// failure: AES-KWP unwraps 25 to 31 bytes from some valid 40-byte wraps.
// The caller holds a reference to k.
func (k *KEK) unwrapDEK(s Suite, dek *[dekSize]byte, wrapped, scratch []byte) error {
	var err error
	switch {
	case !s.Randomized() || len(wrapped) != s.wrappedSize():
		// parse guarantees the size; refuse rather than index past it.
		err = ErrMalformed
	case s == SuiteRandomized || s == SuiteRandomizedDerivedWrap:
		w := k.wrapKWP
		if s == SuiteRandomized {
			w = k.kwp
		}
		// KWP writes len(wrapped)-8 bytes: exactly a DEK for a 40-byte
		// wrap, which parse guarantees.
		var n int
		if n, err = w.Unwrap(dek[:], wrapped, scratch); err == nil && n != dekSize {
			err = kwp.ErrIntegrity
		}
	default:
		err = k.wrapSIV.Open(dek[:], wrapped, nil, scratch)
	}
	if err != nil {
		clear(dek[:])
		return fmt.Errorf("%w: data key does not unwrap under this KEK", ErrAuthentication)
	}
	return nil
}

// Ref returns the reference of this KEK.
func (k *KEK) Ref() KEKRef { return k.ref }

// Destroy makes every later use of this KEK fail with ErrKeyDestroyed and
// zeroes the key bytes it holds (best effort: the expanded AES key
// schedules inside the standard library cannot be reached) as soon as no
// operation holds them: at once when none runs, else when the last running
// one returns. It never blocks. Operations that were sealing under it when
// it was called fail with ErrKeyDestroyed. Caches call it on eviction.
func (k *KEK) Destroy() {
	if k == nil {
		return
	}
	if k.state.Or(kekDestroyed)&kekDestroyed != 0 {
		return
	}
	k.wipe()
}

// acquire takes a reference for an operation, which must call release when
// it no longer uses the key. It fails with ErrKeyDestroyed once Destroy was
// called.
func (k *KEK) acquire() error {
	if k == nil {
		return fmt.Errorf("%w: nil KEK", ErrUnknownKey)
	}
	if k.state.Add(kekRefOne)&kekDestroyed != 0 {
		k.release()
		return k.destroyedError()
	}
	return nil
}

// release drops a reference taken by acquire; the last one dropped after
// Destroy clears the key bytes.
func (k *KEK) release() {
	if k.state.Add(-kekRefOne) == kekDestroyed {
		k.wipe()
	}
}

// wipe clears the key bytes if the KEK is destroyed, unreferenced and not
// yet wiped. The compare-and-swap makes it happen exactly once, and only
// when no operation holds a reference.
func (k *KEK) wipe() {
	if !k.state.CompareAndSwap(kekDestroyed, kekDestroyed|kekWiped) {
		return
	}
	k.wipeBytes()
}

func (k *KEK) wipeBytes() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.key)
	clear(k.wrapKey)
	clear(k.wrapKeySIV)
	if k.wrapSIV != nil {
		k.wrapSIV.Clear()
	}
	if m := k.derived.Swap(nil); m != nil {
		for _, d := range *m {
			clear(d.mac)
			clear(d.sivKey)
			if d.siv != nil {
				d.siv.Clear()
			}
		}
	}
}

// usable reports whether k may still be used: it fails with ErrKeyDestroyed
// once Destroy was called. An operation holding a reference calls it again
// before it returns a seal, so a seal that raced a Destroy fails.
func (k *KEK) usable() error {
	if k == nil {
		return fmt.Errorf("%w: nil KEK", ErrUnknownKey)
	}
	if k.state.Load()&kekDestroyed != 0 {
		return k.destroyedError()
	}
	return nil
}

func (k *KEK) destroyedError() error {
	return fmt.Errorf("%w: KEK %s was destroyed (evicted, closed or shredded)", ErrKeyDestroyed, k.ref)
}

// derive returns the search key whose HKDF info is info (a label of
// derive.go, then the fields it binds: appendKeyInfo), deriving and caching
// it on first use. The caller holds a reference (acquire), so the key cannot
// be cleared while HKDF reads it. A hit takes no lock and allocates
// nothing.
func (k *KEK) derive(info []byte) (*derivedKey, error) {
	if err := k.usable(); err != nil {
		return nil, err
	}
	if m := k.derived.Load(); m != nil {
		if d, ok := (*m)[string(info)]; ok {
			return d, nil
		}
	}
	return k.deriveSlow(string(info))
}

func (k *KEK) deriveSlow(info string) (*derivedKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.usable(); err != nil {
		return nil, err
	}
	old := k.derived.Load()
	if old != nil {
		if d, ok := (*old)[info]; ok {
			return d, nil
		}
	}
	d := &derivedKey{}
	switch {
	case strings.HasPrefix(info, labelSIV):
		raw, err := hkdf.Key(sha256.New, k.key, nil, info, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: KEK %s: key derivation failed", ErrInvalidInput, k.ref)
		}
		d.siv, err = siv.New(raw)
		d.sivKey = raw
		if err != nil {
			return nil, fmt.Errorf("%w: KEK %s: AES-SIV setup failed", ErrInvalidInput, k.ref)
		}
	case strings.HasPrefix(info, labelBlindIndex):
		raw, err := hkdf.Key(sha256.New, k.key, nil, info, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: KEK %s: key derivation failed", ErrInvalidInput, k.ref)
		}
		d.mac = raw
	default:
		return nil, fmt.Errorf("%w: unknown derivation label", ErrInvalidInput)
	}
	m := map[string]*derivedKey{}
	if old != nil {
		m = maps.Clone(*old)
	}
	m[info] = d
	k.derived.Store(&m)
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
