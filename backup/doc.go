// Package backup makes encrypted backups: streaming, segmented AES-256-GCM
// exports (for example of a pg_dump) that restore with nothing but access
// to the class master key in the KMS — no keyring table, no fieldcrypt
// database.
//
// Each export gets a fresh random 256-bit file key, wrapped directly by
// the class's master key (kms.MasterKey.Wrap) under an encryption context
// naming the export. HKDF-SHA256 derives from it a payload key and a header
// MAC key; the header is HMAC-SHA256-authenticated and the payload is a
// STREAM of AES-256-GCM segments whose nonces are a segment counter plus a
// last-segment flag, so truncation, reordering, dropped segments and
// segments spliced from another backup are detected. See
// docs/backup-format.md for the byte layout and usage bounds.
//
// Encrypt, Decrypt and Verify process segments in parallel with memory
// bounded whatever the input size. Decrypt writes a segment's plaintext
// only after authenticating it, but a failure at segment N leaves
// segments 0..N-1 written: treat the output as invalid unless Decrypt
// returns nil.
//
// The options' MeterProvider and TracerProvider (default: the global ones)
// receive bytes by direction, runs by outcome and the file key's KMS call
// (fieldcrypt.backup.*, fieldcrypt.kms.*), and a span per operation.
package backup

//go:generate go test -run TestVectors -update .
