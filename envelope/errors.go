package envelope

import "github.com/fieldcrypt/fieldcrypt/fielderr"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, so callers branch with errors.Is; fielderr.KindOf gives their kind.
// ErrAuthentication, ErrUnsupportedVersion and ErrInvalidInput are the
// shared fielderr values, so backup and kms errors of the same meaning
// match them too. No error text ever contains a
// plaintext or key bytes: errors name the table, column, row, class and key
// version that failed.
var (
	// ErrAuthentication means a ciphertext failed authentication: it was
	// tampered with, truncated in a way the parser could not see, moved to
	// another row, column, class or tenant, or the named key is not the
	// one it was sealed under.
	ErrAuthentication = fielderr.ErrAuthentication
	// ErrMalformed means the input is not a well-formed fieldcrypt ciphertext.
	ErrMalformed = fielderr.New(fielderr.Malformed, "fieldcrypt: malformed ciphertext")
	// ErrUnsupportedVersion means the ciphertext names a format version or
	// algorithm suite this build does not know.
	ErrUnsupportedVersion = fielderr.ErrUnsupportedVersion
	// ErrUnknownKey means the key named by a ciphertext, or needed to seal,
	// does not exist in the key source.
	ErrUnknownKey = fielderr.New(fielderr.NotFound, "fieldcrypt: unknown key")
	// ErrKeyDestroyed means the named key version was destroyed
	// (crypto-shredded): the data it protected is gone for good.
	ErrKeyDestroyed = fielderr.New(fielderr.KeyDestroyed, "fieldcrypt: key destroyed")
	// ErrKeyUnavailable means the key exists but could not be obtained right
	// now (for example the KMS is down and the cache holds no usable copy).
	ErrKeyUnavailable = fielderr.New(fielderr.KeyUnavailable, "fieldcrypt: key unavailable")
	// ErrInvalidInput means the caller passed an invalid argument (an invalid
	// class, an empty table name, a bad option).
	ErrInvalidInput = fielderr.ErrInvalidInput
)
