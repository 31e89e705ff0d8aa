package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/backup"
	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Exit codes of the fieldcrypt command. They are part of its interface:
// scripts branch on them, so a value never changes meaning.
const (
	ExitOK          = 0   // success
	ExitError       = 1   // any other failure (database, I/O, ...)
	ExitUsage       = 2   // bad command line or configuration
	ExitIntegrity   = 3   // a value, backup, the keyring store or the audit log failed authentication: tampering or corruption
	ExitKey         = 4   // a master key or KEK is unavailable (KMS down, access denied, destroyed, retired)
	ExitRefused     = 5   // refused to act (destroy while data or a running process may use the key, no confirmation, a reveal without a reason or an audit log)
	ExitInterrupted = 130 // interrupted by SIGINT/SIGTERM (the operation stopped cleanly)
)

// ExitCodes lists every exit code with its meaning, for --help and docs.
var ExitCodes = []struct {
	Code    int
	Meaning string
}{
	{ExitOK, "success"},
	{ExitError, "error (database, I/O, anything not listed below)"},
	{ExitUsage, "usage or configuration error"},
	{ExitIntegrity, "integrity failure: a value, a backup, the keyring store or the audit log failed authentication"},
	{ExitKey, "key unavailable: KMS unreachable, access denied, key disabled, destroyed or retired"},
	{ExitRefused, "refused: e.g. destroy while data or a running process may still use the key, no confirmation, a reveal without a reason or without an audit log"},
	{ExitInterrupted, "interrupted (SIGINT/SIGTERM)"},
}

// usageError marks a command-line or configuration problem (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// errRefused marks an operation the CLI refused (exit 5).
var errRefused = errors.New("refused")

// errIntegrity marks an integrity failure found by the CLI itself, such as
// a census that saw values failing authentication (exit 3).
var errIntegrity = errors.New("integrity check failed")

// ExitCode maps an error to the process exit code. The order matters: an
// interruption wins over whatever it caused, a refusal over the check
// failure inside it.
func ExitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.Is(err, errRefused), errors.Is(err, keyring.ErrRefused),
		errors.Is(err, audit.ErrPurposeRequired), errors.Is(err, console.ErrAuditUnavailable), errors.Is(err, audit.ErrLogInUse):
		return ExitRefused
	case errors.As(err, &ue), errors.Is(err, keyring.ErrInvalidConfig),
		errors.Is(err, kms.ErrInvalidURI), errors.Is(err, backup.ErrInvalidInput),
		errors.Is(err, console.ErrInvalidQuery), errors.Is(err, console.ErrNotSearchable), errors.Is(err, console.ErrNotEncrypted):
		return ExitUsage
	case errors.Is(err, errIntegrity), errors.Is(err, audit.ErrTampered),
		errors.Is(err, envelope.ErrAuthentication), errors.Is(err, envelope.ErrMalformed),
		errors.Is(err, envelope.ErrUnsupportedVersion),
		errors.Is(err, backup.ErrAuthentication), errors.Is(err, backup.ErrTruncated),
		errors.Is(err, backup.ErrMalformedHeader), errors.Is(err, backup.ErrUnsupportedVersion),
		errors.Is(err, kms.ErrAuthentication), errors.Is(err, keyring.ErrTampered):
		return ExitIntegrity
	case errors.Is(err, envelope.ErrKeyUnavailable), errors.Is(err, envelope.ErrUnknownKey),
		errors.Is(err, envelope.ErrKeyDestroyed), errors.Is(err, keyring.ErrKeyRetired),
		errors.Is(err, backup.ErrUntrustedKey),
		errors.Is(err, kms.ErrUnavailable), errors.Is(err, kms.ErrAccessDenied),
		errors.Is(err, kms.ErrKeyDisabled), errors.Is(err, kms.ErrKeyNotFound):
		return ExitKey
	}
	return ExitError
}
