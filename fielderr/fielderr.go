// Package fielderr is fieldcrypt's error model: every sentinel error of
// every package has a Kind, and KindOf maps any error to the one Kind a
// caller branches on, the way go-cloud's gcerrors.Code does.
//
// Use errors.Is with a package's sentinel when you care about one precise
// cause (envelope.ErrKeyDestroyed, keyring.ErrTooSoon); use KindOf when you
// want to know what sort of failure it was, whichever package reported it:
//
//	switch fielderr.KindOf(err) {
//	case fielderr.KeyUnavailable: // retry later: the KMS or the store is down
//	case fielderr.Authentication, fielderr.Tampered: // raise an alarm
//	}
//
// The fieldcrypt command derives its exit codes from KindOf alone.
//
// Sentinels that meant the same thing in several packages are defined once
// here (ErrAuthentication, ErrInvalidInput, ErrUnsupportedVersion,
// ErrUntrustedKey); the package names (envelope.ErrAuthentication,
// backup.ErrAuthentication, kms.ErrAuthentication, ...) are the same
// values, so errors.Is matches across packages.
//
// Error types of the library (kms.Error, envelope.Error, keyring.KeyError,
// reencrypt.RowFailure) have one Unwrap style: Unwrap() []error.
package fielderr

import (
	"context"
	"fmt"
)

// Kind is what sort of failure an error is. The zero Kind is OK (no error).
type Kind int

// Kinds, from the one KindOf prefers to the one it picks last when an error
// carries several (a refused destroy whose check failed is Refused; a key
// that is unavailable because the KMS refused the input is KeyUnavailable).
const (
	// OK: no error.
	OK Kind = iota
	// Canceled: the caller's context was cancelled (an interrupt).
	Canceled
	// Refused: an operation was refused to keep an invariant (destroy while
	// data still uses a key, no confirmation, a key demoted too recently).
	Refused
	// Tampered: the keyring store holds key metadata the keyring did not
	// write.
	Tampered
	// Authentication: a ciphertext, a backup or a wrapped key failed
	// authentication: tampering, corruption, the wrong key or binding.
	Authentication
	// Malformed: input is not a well-formed fieldcrypt ciphertext or backup
	// (or is truncated).
	Malformed
	// Unsupported: a format version or suite this build does not know, or a
	// path the library does not support.
	Unsupported
	// KeyDestroyed: the key was crypto-shredded; its data is gone for good.
	KeyDestroyed
	// KeyRetired: the key version is retired (reversible).
	KeyRetired
	// NotFound: the key, scope, tenant or job does not exist.
	NotFound
	// AccessDenied: the KMS refused the caller's credentials or policy.
	AccessDenied
	// KeyUnavailable: a key exists but cannot be used right now (KMS down,
	// key disabled, master key not trusted, store unsealed).
	KeyUnavailable
	// InvalidInput: a bad argument, option, configuration or URI.
	InvalidInput
	// Conflict: concurrent writers kept changing what was being updated.
	Conflict
	// Unknown: anything else (database, I/O).
	Unknown
)

var kindNames = [...]string{
	OK: "ok", Canceled: "canceled", Refused: "refused", Tampered: "tampered",
	Authentication: "authentication", Malformed: "malformed", Unsupported: "unsupported",
	KeyDestroyed: "key_destroyed", KeyRetired: "key_retired", NotFound: "not_found",
	AccessDenied: "access_denied", KeyUnavailable: "key_unavailable", InvalidInput: "invalid_input",
	Conflict: "conflict", Unknown: "unknown",
}

// String returns the kind's snake_case name ("key_destroyed").
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "unknown"
	}
	return kindNames[k]
}

// MarshalText renders the name, so kinds read well in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// sentinel is an error value with a kind.
type sentinel struct {
	kind Kind
	msg  string
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Kind() Kind    { return s.kind }

// New returns a sentinel error of the given kind: a distinct value for
// errors.Is whose Kind is kind. Packages declare their sentinels with it.
func New(kind Kind, msg string) error { return &sentinel{kind: kind, msg: msg} }

// marked is an error with a kind attached.
type marked struct {
	err  error
	kind Kind
}

func (m *marked) Error() string   { return m.err.Error() }
func (m *marked) Unwrap() []error { return []error{m.err} }
func (m *marked) Kind() Kind      { return m.kind }

// Mark returns err with kind attached: KindOf prefers kind or whatever the
// chain of err says, by the usual precedence. Mark(nil, k) is nil.
func Mark(err error, kind Kind) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, kind: kind}
}

// quiet is an error whose message is its own text, wrapping a sentinel
// whose text it does not repeat.
type quiet struct {
	msg  string
	errs []error
}

func (q *quiet) Error() string   { return q.msg }
func (q *quiet) Unwrap() []error { return q.errs }

// Errorf returns an error whose message is exactly the formatted text and
// that wraps sentinel (for errors.Is and KindOf) without repeating the
// sentinel's own text, so that a message reads as one sentence. Errors in
// args wrapped with %w stay in the chain.
func Errorf(sentinel error, format string, args ...any) error {
	e := fmt.Errorf(format, args...)
	return &quiet{msg: e.Error(), errs: []error{sentinel, e}}
}

// Shared sentinels: one value for a meaning several packages share.
var (
	// ErrAuthentication: a ciphertext, a backup or a wrapped key failed
	// authentication (tampered, truncated in a way the parser could not
	// see, moved to another binding, or the wrong key).
	ErrAuthentication = New(Authentication, "fieldcrypt: authentication failed")
	// ErrInvalidInput: the caller passed an invalid argument or option.
	ErrInvalidInput = New(InvalidInput, "fieldcrypt: invalid input")
	// ErrUnsupportedVersion: a format version or suite this build does not
	// know.
	ErrUnsupportedVersion = New(Unsupported, "fieldcrypt: unsupported format version or suite")
	// ErrUntrustedKey: a stored record or a backup header names a master
	// key (or class) the caller does not trust for it; nothing is unwrapped
	// under it.
	ErrUntrustedKey = New(KeyUnavailable, "fieldcrypt: master key not trusted")
)

// KindOf returns the kind of err: OK for nil, Canceled for a cancelled
// context, else the most telling kind found anywhere in its chain (see the
// order of the Kind constants), Unknown when none has one.
func KindOf(err error) Kind {
	if err == nil {
		return OK
	}
	best := Unknown
	walk(err, func(e error) {
		k := Unknown
		if ke, ok := e.(interface{ Kind() Kind }); ok {
			k = ke.Kind()
		} else if e == context.Canceled {
			k = Canceled
		}
		if k != OK && k < best {
			best = k
		}
	})
	return best
}

// walk calls fn on err and every error it wraps, depth first.
func walk(err error, fn func(error)) {
	for depth := 0; err != nil && depth < 100; depth++ {
		fn(err)
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e, fn)
			}
			return
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			return
		}
	}
}
