package keyring

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Sentinel errors of this package. Lookups also return the envelope
// sentinels (envelope.ErrUnknownKey, ErrKeyDestroyed, ErrKeyUnavailable),
// with the kms sentinel that caused them still in the chain.
var (
	// ErrInvalidConfig means a Config (or a master key URI passed to an
	// operation) is invalid. The message names the entry and the reason.
	ErrInvalidConfig = errors.New("keyring: invalid configuration")
	// ErrRefused means an operation was refused because it would break an
	// invariant: destroying or retiring the primary or a live search key,
	// a destroy check that found data still using the version, an illegal
	// state transition.
	ErrRefused = errors.New("keyring: operation refused")
	// ErrKeyRetired means the version is retired: it exists but may not be
	// used. It comes with envelope.ErrKeyUnavailable.
	ErrKeyRetired = errors.New("keyring: key retired")
	// ErrStore means the store failed or holds inconsistent data.
	ErrStore = errors.New("keyring: store error")
	// ErrClosed means the keyring was closed.
	ErrClosed = errors.New("keyring: closed")
)

// KeyError is the error returned for a failed key operation. It names the
// operation, the scope or version and the master key URI, never key
// material. Unwrap returns every cause, so errors.Is matches both the
// keyring/envelope sentinel and the underlying kms or store error.
type KeyError struct {
	Op      string         // "unwrap", "wrap", "lookup", "rotate", "destroy", ...
	Scope   envelope.Scope // the scope concerned
	Version uint32         // 0 when the error concerns the whole scope
	URI     string         // master key URI, "" when not relevant
	Reason  string         // human explanation, may be ""
	Errs    []error        // sentinel(s) first, then causes
}

func (e *KeyError) Error() string {
	var b strings.Builder
	b.WriteString("keyring: ")
	b.WriteString(e.Op)
	b.WriteString(" ")
	if e.Version != 0 {
		b.WriteString("KEK ")
		b.WriteString(envelope.KEKRef{Class: e.Scope.Class, Tenant: e.Scope.Tenant, Version: e.Version}.String())
	} else {
		b.WriteString("scope ")
		b.WriteString(e.Scope.String())
	}
	if e.URI != "" {
		b.WriteString(" (master key ")
		b.WriteString(e.URI)
		b.WriteString(")")
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	for _, err := range e.Errs {
		if err == nil {
			continue
		}
		b.WriteString(": ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the causes.
func (e *KeyError) Unwrap() []error { return e.Errs }

func keyErr(op string, ref envelope.KEKRef, uri, reason string, errs ...error) error {
	return &KeyError{Op: op, Scope: ref.Scope(), Version: ref.Version, URI: uri, Reason: reason, Errs: errs}
}

func scopeErr(op string, s envelope.Scope, uri, reason string, errs ...error) error {
	return &KeyError{Op: op, Scope: s, URI: uri, Reason: reason, Errs: errs}
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}
