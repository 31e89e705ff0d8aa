package backup

import "github.com/fieldcrypt/fieldcrypt/fielderr"

// Sentinel errors. Every error returned by this package wraps at least one
// of them (or a kms sentinel, or the caller's reader/writer error), so
// callers branch with errors.Is; fielderr.KindOf gives their kind. Error text names the segment and the reason,
// never key material or plaintext.
var (
	// ErrMalformedHeader means the input does not start with a well-formed
	// fieldcrypt backup header (wrong magic, bad field, out-of-range length).
	ErrMalformedHeader = fielderr.New(fielderr.Malformed, "backup: malformed header")
	// ErrUnsupportedVersion means the header names a format version this
	// build does not know.
	//
	// Deprecated: it is fielderr.ErrUnsupportedVersion (the same value);
	// kept for one release.
	ErrUnsupportedVersion = fielderr.ErrUnsupportedVersion
	// ErrAuthentication means the header MAC, the wrapped file key or a
	// payload segment failed authentication: the file was tampered with,
	// segments were reordered, dropped, duplicated or spliced from another
	// backup, or the master key is not the one the backup was made with.
	//
	// Deprecated: it is fielderr.ErrAuthentication (the same value); kept
	// for one release.
	ErrAuthentication = fielderr.ErrAuthentication
	// ErrTruncated means the input ended early: inside the header, before
	// the first segment, or after an authentic segment that is not marked
	// as the final one.
	ErrTruncated = fielderr.New(fielderr.Malformed, "backup: truncated")
	// ErrTooLarge means the input exceeds the format's per-file limit
	// (see MaxPlaintextSize).
	ErrTooLarge = fielderr.New(fielderr.InvalidInput, "backup: input too large")
	// ErrUntrustedKey means the header names a master key or class the
	// caller did not allow (DecryptOptions.KeyURIs, DecryptOptions.Class).
	//
	// Deprecated: it is fielderr.ErrUntrustedKey (the same value); kept for
	// one release.
	ErrUntrustedKey = fielderr.ErrUntrustedKey
	// ErrInvalidInput means the caller passed a bad argument or option.
	//
	// Deprecated: it is fielderr.ErrInvalidInput (the same value); kept for
	// one release.
	ErrInvalidInput = fielderr.ErrInvalidInput
)
