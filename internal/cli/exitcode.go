package cli

import (
	"fmt"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
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
func usageError(err error) error { return fielderr.Mark(err, fielderr.InvalidInput) }

func usageErrorf(format string, args ...any) error {
	return usageError(fmt.Errorf(format, args...))
}

// errRefused marks an operation the CLI refused (exit 5); wrap it with
// fielderr.Errorf, whose message does not repeat it.
var errRefused = fielderr.New(fielderr.Refused, "refused")

// errIntegrity marks an integrity failure found by the CLI itself, such as
// a census that saw values failing authentication (exit 3).
var errIntegrity = fielderr.New(fielderr.Authentication, "integrity check failed")

// ExitCode maps an error to the process exit code through its kind
// (fielderr.KindOf), so every library error has a code without this
// package listing them.
func ExitCode(err error) int {
	switch fielderr.KindOf(err) {
	case fielderr.OK:
		return ExitOK
	case fielderr.Canceled:
		return ExitInterrupted
	case fielderr.Refused:
		return ExitRefused
	case fielderr.InvalidInput:
		return ExitUsage
	case fielderr.Tampered, fielderr.Authentication, fielderr.Malformed, fielderr.Unsupported:
		return ExitIntegrity
	case fielderr.KeyDestroyed, fielderr.KeyRetired, fielderr.NotFound, fielderr.AccessDenied, fielderr.KeyUnavailable:
		return ExitKey
	}
	return ExitError
}
