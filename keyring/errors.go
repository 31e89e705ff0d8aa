package keyring

import (
	"fmt"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// Sentinel errors of this package. Lookups also return the envelope
// sentinels (envelope.ErrUnknownKey, ErrKeyDestroyed, ErrKeyUnavailable),
// with the kms sentinel that caused them still in the chain.
var (
	// ErrInvalidConfig means a Config (or a master key URI passed to an
	// operation) is invalid. The message names the entry and the reason.
	ErrInvalidConfig = fielderr.New(fielderr.InvalidInput, "keyring: invalid configuration")
	// ErrRefused means an operation was refused because it would break an
	// invariant: destroying or retiring the primary or a live search key,
	// a destroy check that found data still using the version, a version
	// demoted too recently (ErrTooSoon), an illegal state transition.
	ErrRefused = fielderr.New(fielderr.Refused, "keyring: operation refused")
	// ErrKeyRetired means the version is retired: it exists but may not be
	// used. It comes with envelope.ErrKeyUnavailable.
	ErrKeyRetired = fielderr.New(fielderr.KeyRetired, "keyring: key retired")
	// ErrStore means the store failed or holds inconsistent data.
	ErrStore = fielderr.New(fielderr.Unknown, "keyring: store error")
	// ErrClosed means the keyring was closed.
	ErrClosed = fielderr.New(fielderr.Unknown, "keyring: closed")
	// ErrTampered means the store holds key metadata the keyring did not
	// write: a MAC that does not verify, a broken invariant, an epoch
	// older than one this process saw, a missing or foreign class key. It
	// comes with envelope.ErrKeyUnavailable, and with an audit event
	// (keyring.tamper). Nothing is sealed or opened under such a state.
	ErrTampered = fielderr.New(fielderr.Tampered, "keyring: key store tampered with")
	// ErrUntrustedKey means a stored record names a master key that the
	// configuration does not list for its class (ClassConfig.MasterKey or
	// PreviousMasterKeys): the keyring does not unwrap under it. A store
	// writer may have added it, or the configuration dropped a master key
	// still in use. It comes with envelope.ErrKeyUnavailable and an audit
	// event (keyring.tamper). It is fielderr.ErrUntrustedKey (the value
	// backup uses for a backup under a key the caller does not trust).
	ErrUntrustedKey = fielderr.ErrUntrustedKey
	// ErrUnsealed means the store predates integrity protection (no class
	// key, no MACs): run Keyring.Upgrade (fieldcrypt keys upgrade) once,
	// or set Config.AllowUnsealedStore for the migration. It comes with
	// envelope.ErrKeyUnavailable.
	ErrUnsealed = fielderr.New(fielderr.KeyUnavailable, "keyring: key store not sealed (run 'fieldcrypt keys upgrade')")
	// ErrTooSoon means Destroy or Retire was refused because a running
	// process may still seal new values under the version (it stopped
	// being the primary less than MaxStateAge + DemotionSlack ago). The
	// message says until when. It comes with ErrRefused.
	ErrTooSoon = fielderr.New(fielderr.Refused, "keyring: version may still be in use as a primary")
	// ErrCircuitOpen means a call to a master key failed at once, without
	// reaching the KMS, because the KMS did not answer a recent call and
	// has not answered a probe since (see WithCircuitBreaker). It comes
	// with kms.ErrUnavailable, and from lookups with
	// envelope.ErrKeyUnavailable.
	ErrCircuitOpen = fielderr.New(fielderr.KeyUnavailable, "keyring: KMS unreachable (circuit breaker open)")
	// ErrAccessDenied means the keyring's configuration does not let this
	// process do that with the class (Config.Decrypt, Config.EncryptOnly):
	// opening a value of an encrypt-only class, any use of a class in
	// neither list, a lifecycle operation without decrypt access. It is
	// decided in the process, before any key is read or unwrapped, and
	// audited (keyring.access_denied). It comes with
	// envelope.ErrKeyUnavailable; it is not kms.ErrAccessDenied (the KMS
	// refusing), which callers can tell apart.
	ErrAccessDenied = fielderr.New(fielderr.AccessDenied, "keyring: access to the class denied by the keyring's configuration")
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
