package backup

import "errors"

// Sentinel errors. Every error returned by this package wraps at least one
// of them (or a kms sentinel, or the caller's reader/writer error), so
// callers branch with errors.Is. Error text names the segment and the reason,
// never key material or plaintext.
var (
	// ErrMalformedHeader means the input does not start with a well-formed
	// fieldcrypt backup header (wrong magic, bad field, out-of-range length).
	ErrMalformedHeader = errors.New("backup: malformed header")
	// ErrUnsupportedVersion means the header names a format version this
	// build does not know.
	ErrUnsupportedVersion = errors.New("backup: unsupported format version")
	// ErrAuthentication means the header MAC, the wrapped file key or a
	// payload segment failed authentication: the file was tampered with,
	// segments were reordered, dropped, duplicated or spliced from another
	// backup, or the master key is not the one the backup was made with.
	ErrAuthentication = errors.New("backup: authentication failed")
	// ErrTruncated means the input ended early: inside the header, before
	// the first segment, or after an authentic segment that is not marked
	// as the final one.
	ErrTruncated = errors.New("backup: truncated")
	// ErrTooLarge means the input exceeds the format's per-file limit
	// (see MaxPlaintextSize).
	ErrTooLarge = errors.New("backup: input too large")
	// ErrUntrustedKey means the header names a master key or class the
	// caller did not allow (DecryptOptions.KeyURIs, DecryptOptions.Class).
	ErrUntrustedKey = errors.New("backup: master key or class not allowed")
	// ErrInvalidInput means the caller passed a bad argument or option.
	ErrInvalidInput = errors.New("backup: invalid input")
)
