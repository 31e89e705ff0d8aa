// Package kms is the one small interface every master-key backend
// implements, and the URI registry that opens them.
//
// A master key lives in a KMS (AWS KMS, Google Cloud KMS) or, for
// development and tests, in a local file. fieldcrypt asks it for exactly two
// things: wrap a key, and unwrap it, each under an encryption context that
// the KMS authenticates. Nothing provider-specific leaks above this
// interface; backends are chosen by URI, so configuration is a string:
//
//	aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-...
//	gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K
//	local:///var/lib/fieldcrypt/master-critical.key
//
// Backends register an Opener for their scheme in an init function; import
// the backend package (for example keyring/kms/awskms) to make its scheme
// available.
package kms

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// MasterKey wraps and unwraps key material under a master key held by a KMS.
//
// Implementations must honour ctx deadlines and cancellation, be safe for
// concurrent use, and return errors that wrap one of this package's
// sentinels and name the key URI, never key material.
type MasterKey interface {
	// URI returns the key's URI. It contains no secret.
	URI() string
	// Wrap encrypts key (at most 4 KiB) under the master key, bound to ec.
	Wrap(ctx context.Context, key []byte, ec EncryptionContext) ([]byte, error)
	// Unwrap decrypts what Wrap returned. It fails with ErrAuthentication if
	// ec differs from the one used to wrap, or the input was altered.
	Unwrap(ctx context.Context, wrapped []byte, ec EncryptionContext) ([]byte, error)
}

// EncryptionContext is authenticated, non-secret context bound to a wrap:
// AWS KMS receives it as EncryptionContext, Google Cloud KMS as additional
// authenticated data (canonically encoded), the local backend as AES-GCM
// associated data. Keys and values must be non-empty UTF-8.
type EncryptionContext map[string]string

// Canonical returns an unambiguous byte encoding of ec: entries sorted by
// key, each as len(key)||key||len(value)||value with 4-byte big-endian
// lengths, after the prefix "fieldcrypt-ec/v1". Backends without a native
// key-value context use it as associated data.
func (ec EncryptionContext) Canonical() []byte {
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []byte("fieldcrypt-ec/v1")
	put := func(s string) {
		n := len(s)
		out = append(out, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		out = append(out, s...)
	}
	for _, k := range keys {
		put(k)
		put(ec[k])
	}
	return out
}

// Sentinel errors shared by every backend. Test with errors.Is.
var (
	// ErrUnavailable: the KMS could not be reached or timed out (KMS down).
	ErrUnavailable = errors.New("kms: unavailable")
	// ErrAccessDenied: the KMS refused the caller's credentials or policy.
	ErrAccessDenied = errors.New("kms: access denied")
	// ErrKeyDisabled: the master key exists but is disabled or scheduled
	// for deletion.
	ErrKeyDisabled = errors.New("kms: master key disabled")
	// ErrKeyNotFound: the master key does not exist.
	ErrKeyNotFound = errors.New("kms: master key not found")
	// ErrAuthentication: the wrapped key failed authentication (wrong
	// encryption context, wrong master key, or corrupted input).
	ErrAuthentication = errors.New("kms: authentication failed")
	// ErrInvalidURI: a master key URI is malformed or names an unknown scheme.
	ErrInvalidURI = errors.New("kms: invalid master key URI")
	// ErrInvalidInput: bad arguments (empty key, oversize input, bad context).
	ErrInvalidInput = errors.New("kms: invalid input")
)

// Error is the error type backends return. It names the operation and the
// key URI; Err wraps one of the sentinels above and, where useful, the
// provider's own error (which never contains key material).
type Error struct {
	Op  string // "wrap", "unwrap", "open"
	URI string
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("kms %s with %s: %v", e.Op, e.URI, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Opener opens a master key from its URI.
type Opener interface {
	OpenMasterKey(ctx context.Context, uri string) (MasterKey, error)
}

// OpenerFunc adapts a function to Opener.
type OpenerFunc func(ctx context.Context, uri string) (MasterKey, error)

// OpenMasterKey calls f.
func (f OpenerFunc) OpenMasterKey(ctx context.Context, uri string) (MasterKey, error) {
	return f(ctx, uri)
}

var (
	mu      sync.RWMutex
	openers = map[string]Opener{}
)

// Register makes o open URIs of the given scheme ("aws-kms", "gcp-kms",
// "local"). Registering a scheme twice replaces the opener, so tests can
// point a scheme at an emulator.
func Register(scheme string, o Opener) {
	mu.Lock()
	defer mu.Unlock()
	openers[scheme] = o
}

// Scheme returns the scheme of a master key URI ("aws-kms" for
// "aws-kms://arn:..."), or an error wrapping ErrInvalidURI.
func Scheme(uri string) (string, error) {
	i := strings.Index(uri, "://")
	if i <= 0 {
		return "", fmt.Errorf("%w: %q has no scheme (want aws-kms://, gcp-kms:// or local://)", ErrInvalidURI, uri)
	}
	return uri[:i], nil
}

// Open opens the master key a URI names, through the opener registered for
// its scheme.
func Open(ctx context.Context, uri string) (MasterKey, error) {
	scheme, err := Scheme(uri)
	if err != nil {
		return nil, err
	}
	mu.RLock()
	o, ok := openers[scheme]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: no backend registered for scheme %q in %q (import its package, e.g. keyring/kms/awskms)", ErrInvalidURI, scheme, uri)
	}
	return o.OpenMasterKey(ctx, uri)
}

// MaxKeySize is the largest key, in bytes, that Wrap accepts (the AWS KMS
// Encrypt limit; every backend enforces it so that backends are
// interchangeable).
const MaxKeySize = 4096

// Validate reports whether ec is well formed: every key and value non-empty,
// valid UTF-8. The error wraps ErrInvalidInput and names the offending key
// (context is not secret), never a value.
func (ec EncryptionContext) Validate() error {
	for k, v := range ec {
		if k == "" || !utf8.ValidString(k) {
			return fmt.Errorf("%w: encryption context key %q is empty or not UTF-8", ErrInvalidInput, k)
		}
		if v == "" || !utf8.ValidString(v) {
			return fmt.Errorf("%w: encryption context value for %q is empty or not UTF-8", ErrInvalidInput, k)
		}
	}
	return nil
}

// CheckWrapInput validates Wrap's arguments for backends: key must be 1 to
// MaxKeySize bytes and ec valid. Errors wrap ErrInvalidInput and carry sizes
// only, never the key.
func CheckWrapInput(key []byte, ec EncryptionContext) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty key", ErrInvalidInput)
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("%w: key is %d bytes, at most %d allowed", ErrInvalidInput, len(key), MaxKeySize)
	}
	return ec.Validate()
}

// CheckUnwrapInput validates Unwrap's arguments for backends whose wrapped
// keys are at most max bytes: wrapped must be non-empty and within max, and
// ec valid. Errors wrap ErrInvalidInput and carry sizes only.
func CheckUnwrapInput(wrapped []byte, ec EncryptionContext, max int) error {
	switch {
	case len(wrapped) == 0:
		return fmt.Errorf("%w: empty wrapped key", ErrInvalidInput)
	case len(wrapped) > max:
		return fmt.Errorf("%w: wrapped key is %d bytes, at most %d possible", ErrInvalidInput, len(wrapped), max)
	}
	return ec.Validate()
}

// ContextError returns nil if ctx is live, or an error wrapping both
// ErrUnavailable and ctx.Err() (so errors.Is works for context.Canceled and
// context.DeadlineExceeded too). Backends call it before and after I/O.
func ContextError(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}
