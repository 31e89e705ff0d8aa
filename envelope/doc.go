// Package envelope is fieldcrypt's ciphertext format and per-value
// encryption: every value gets its own random data key, the data key is
// wrapped under a key-encryption key (KEK), and the result is bound to
// where the value lives.
//
// For the common case, build an Envelope over a keyring and seal each value
// with a Binding that names its class, table, column and, when known, row:
//
//	e := envelope.New(kr) // kr: *keyring.Keyring, an envelope.KeySource
//	b := envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn", Row: id}
//	ct, err := e.Seal(ctx, b, []byte(ssn))
//	...
//	pt, err := e.Open(ctx, b, ct)
//
// Most applications never call this package directly: package gormcrypt
// does it for tagged struct fields.
//
// # Why it is built this way
//
// A fresh 256-bit data key per value means no two values share a key, so a
// leaked data key exposes one value, and the data key can seal with a fixed
// nonce (it seals exactly once). The data key is wrapped with AES-KWP (NIST
// SP 800-38F), which has no nonce, so a KEK version can wrap far more than
// the 2^32 values at which random-nonce AES-GCM under one key must stop.
//
// The associated data binds class, tenant, table, column and row: a value
// copied to another row or column, or read as another class or tenant,
// fails authentication. The KEK version is bound by the wrap instead, which
// is what makes Rewrap possible: key rotation replaces the wrapped key
// and the version in the header, and leaves the data ciphertext as it
// was, without ever computing the plaintext.
//
// The header names its format version, algorithm suite, class and KEK
// version, so Open asks the key source for exactly one key, and a future
// suite never breaks data written by this one. Seal writes suite 0x03,
// whose data key is wrapped under a key derived from the KEK rather than
// the KEK itself, so a KEK is only ever HKDF input; values of suite 0x01,
// written by earlier builds, still open and rewrap. An Envelope built with
// WithSealSuite(SuiteRandomizedSIVWrap) writes suite 0x04 instead, which
// wraps the data key with AES-SIV (RFC 5297) rather than AES-KWP: 4 AES
// block calls per wrap instead of 24, for 8 more bytes per value, and an
// RFC built from NIST parts rather than a NIST key-wrap mode
// (docs/format.md weighs the two). Every suite opens whatever Seal writes.
//
// Every operation holds a reference to the KEKs it uses; KEK.Destroy, which
// a keyring calls on eviction, close and shredding, never clears key bytes
// under a running operation. A seal that races a Destroy fails with
// ErrKeyDestroyed; it never returns a value sealed under a cleared key. The text form ("fc1:" +
// base64) lets a reader tell ciphertext from legacy plaintext during a
// migration.
//
// # Equality search
//
// SealDeterministic (AES-SIV) and blind indexes (ComputeBlindIndex,
// HMAC-SHA256, optionally Argon2id) make equality queries possible. Both
// leak which values are equal, and so their frequency. Their keys derive
// from the scope's search keys, which do not change when the primary KEK
// rotates; queries use the *Candidates functions to cover every live search
// key. See docs/searchable.md.
//
// # What not to do
//
// Do not Seal with an empty Row and then expect row binding: a value sealed
// without a row is recorded as not row-bound. Do not treat Inspect's header
// as authenticated: it only routes. Do not log ciphertexts' plaintexts: the
// errors of this package name table, column, row and key version, never
// values or keys, and callers should keep it that way.
//
// The byte layout, key derivations, usage bounds and test vectors are in
// docs/format.md.
//
// Seals and opens are counted through OpenTelemetry (fieldcrypt.seal,
// fieldcrypt.open: class, kind, outcome, where an authentication failure
// is outcome auth_failed), with the global meter provider unless
// WithMeterProvider says otherwise; nothing is exported until the
// application installs one, and counting allocates nothing. They are not
// traced: a span per value would cost more than the value.
package envelope
