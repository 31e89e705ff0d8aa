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
// Backends register an Opener for their scheme in DefaultRegistry in an
// init function; import the backend package (for example
// keyring/kms/awskms) to make its scheme available. Each backend validates
// its own URIs (URIValidator), so a scheme you Register works everywhere a
// built-in one does. An application that needs other settings (an
// emulator's endpoint, say) builds its own Registry, registers explicitly
// configured openers (awskms.Opener, gcpkms.Opener, localkms.Opener) and
// passes it to the keyring (keyring.WithOpener). No backend reads the
// environment to change where keys are sent.
package kms

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
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
	// Close releases what the key holds (a client connection, key
	// material). The key must not be used after Close.
	Close() error
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

// Sentinel errors shared by every backend. Test with errors.Is;
// fielderr.KindOf gives their kind.
var (
	// ErrUnavailable: the KMS could not be reached or timed out (KMS down).
	ErrUnavailable = fielderr.New(fielderr.KeyUnavailable, "kms: unavailable")
	// ErrAccessDenied: the KMS refused the caller's credentials or policy.
	ErrAccessDenied = fielderr.New(fielderr.AccessDenied, "kms: access denied")
	// ErrKeyDisabled: the master key exists but is disabled or scheduled
	// for deletion.
	ErrKeyDisabled = fielderr.New(fielderr.KeyUnavailable, "kms: master key disabled")
	// ErrKeyNotFound: the master key does not exist.
	ErrKeyNotFound = fielderr.New(fielderr.NotFound, "kms: master key not found")
	// ErrAuthentication: the wrapped key failed authentication (wrong
	// encryption context, wrong master key, or corrupted input).
	//
	// Deprecated: it is fielderr.ErrAuthentication (the same value); kept
	// for one release.
	ErrAuthentication = fielderr.ErrAuthentication
	// ErrInvalidURI: a master key URI is malformed or names an unknown scheme.
	ErrInvalidURI = fielderr.New(fielderr.InvalidInput, "kms: invalid master key URI")
	// ErrInvalidInput: bad arguments (empty key, oversize input, bad context).
	//
	// Deprecated: it is fielderr.ErrInvalidInput (the same value); kept for
	// one release.
	ErrInvalidInput = fielderr.ErrInvalidInput
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

// Unwrap returns the cause.
func (e *Error) Unwrap() []error { return []error{e.Err} }

// Opener opens a master key from its URI.
type Opener interface {
	OpenMasterKey(ctx context.Context, uri string) (MasterKey, error)
}

// URIValidator is implemented by openers that check a URI of their scheme
// without contacting the KMS. Every backend's opener implements it, so a
// configuration is checked by the parser that will open it, and a scheme
// added with Register is checked by its own backend.
type URIValidator interface {
	ValidateURI(uri string) error
}

// OpenerFunc adapts a function to Opener.
type OpenerFunc func(ctx context.Context, uri string) (MasterKey, error)

// OpenMasterKey calls f.
func (f OpenerFunc) OpenMasterKey(ctx context.Context, uri string) (MasterKey, error) {
	return f(ctx, uri)
}

// Registry opens master keys by the scheme of their URI, through the
// Opener registered for it (like go-cloud's URLMux). It is an Opener and a
// URIValidator itself, so a keyring or a backup can be given one. The zero
// value is an empty registry ready to use; DefaultRegistry is the one
// Register, Open and ValidateURI use, and the one backend packages register
// their default openers in when imported.
type Registry struct {
	mu      sync.RWMutex
	openers map[string]Opener
}

// DefaultRegistry holds the openers backend packages register in their
// init functions (import keyring/kms/awskms for aws-kms://, ...).
var DefaultRegistry = new(Registry)

var schemeRE = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)

// Register makes o open URIs of the given scheme ("aws-kms", "gcp-kms",
// "local", or one of your own: lower-case letters, digits, '+', '.', '-').
// Registering a scheme twice replaces the opener, so an application can
// point a scheme at an emulator with an explicitly configured opener.
func (r *Registry) Register(scheme string, o Opener) {
	if !schemeRE.MatchString(scheme) || o == nil {
		panic(fmt.Sprintf("kms: Register(%q): invalid scheme or nil opener", scheme))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.openers == nil {
		r.openers = map[string]Opener{}
	}
	r.openers[scheme] = o
}

// Schemes lists the registered schemes, sorted.
func (r *Registry) Schemes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.openers))
	for s := range r.openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func (r *Registry) opener(uri string) (Opener, error) {
	scheme, err := Scheme(uri)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	o, ok := r.openers[scheme]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q: unknown scheme %q (registered: %s; import a backend package, e.g. keyring/kms/awskms, or kms.Register yours)",
			ErrInvalidURI, uri, scheme, strings.Join(r.Schemes(), ", "))
	}
	return o, nil
}

// OpenMasterKey opens the master key a URI names, through the opener
// registered for its scheme.
func (r *Registry) OpenMasterKey(ctx context.Context, uri string) (MasterKey, error) {
	o, err := r.opener(uri)
	if err != nil {
		return nil, err
	}
	return o.OpenMasterKey(ctx, uri)
}

// ValidateURI checks a master key URI without contacting any KMS: its
// scheme must be registered, and its backend must accept the rest (openers
// that are not URIValidators accept anything after "scheme://"). Errors
// wrap ErrInvalidURI.
func (r *Registry) ValidateURI(uri string) error {
	o, err := r.opener(uri)
	if err != nil {
		return err
	}
	if v, ok := o.(URIValidator); ok {
		return v.ValidateURI(uri)
	}
	if _, rest, _ := strings.Cut(uri, "://"); strings.TrimSpace(rest) == "" {
		return fmt.Errorf("%w: %q: nothing after the scheme", ErrInvalidURI, uri)
	}
	return nil
}

// Register registers o for scheme in DefaultRegistry.
func Register(scheme string, o Opener) { DefaultRegistry.Register(scheme, o) }

// Scheme returns the scheme of a master key URI ("aws-kms" for
// "aws-kms://arn:..."), or an error wrapping ErrInvalidURI.
func Scheme(uri string) (string, error) {
	i := strings.Index(uri, "://")
	if i <= 0 {
		return "", fmt.Errorf("%w: %q has no scheme (want aws-kms://, gcp-kms:// or local://)", ErrInvalidURI, uri)
	}
	return uri[:i], nil
}

// Open opens the master key a URI names through DefaultRegistry.
func Open(ctx context.Context, uri string) (MasterKey, error) {
	return DefaultRegistry.OpenMasterKey(ctx, uri)
}

// ValidateURI checks a master key URI against DefaultRegistry.
func ValidateURI(uri string) error { return DefaultRegistry.ValidateURI(uri) }

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
