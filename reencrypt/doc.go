// Package reencrypt moves the encrypted values of a database column to the
// current keys, online, while the application keeps reading and writing
// the same rows. It is the engine behind the CLI commands
// `fieldcrypt reencrypt` (Rewrap, and Full with --full),
// `fieldcrypt encrypt-existing` (EncryptExisting) and `fieldcrypt keys
// census` (Census).
//
// # Why it is built this way
//
// Key rotation is only finished when no value still needs the old key, and
// the tables that hold those values are large and in use. So the engine:
//
//   - never takes the table offline: every write is a compare-and-swap on
//     the value it read (UPDATE ... WHERE pk = ? AND col = old), so a
//     concurrent application write is never overwritten; a row whose swap
//     fails is read again (under a row lock) and retried;
//   - pages with keysets (WHERE pk > last ORDER BY pk LIMIT n), never
//     OFFSET, so each batch costs the same at the end of the table as at
//     the start;
//   - splits the table once per job into primary-key ranges (chunks) kept
//     in the database itself (fieldcrypt_reencrypt_jobs and
//     fieldcrypt_reencrypt_chunks), and lets any number of processes on
//     any number of hosts lease chunks (SELECT ... FOR UPDATE SKIP LOCKED
//     on PostgreSQL and MySQL/MariaDB, an optimistic claim on SQLite). There
//     is no coordinator to run or to lose;
//   - commits each batch's swaps and the chunk's checkpoint (last primary
//     key done, lease still ours) in one transaction, so a process killed at
//     any instant loses at most the batch in flight, which the next owner
//     of the chunk redoes from the checkpoint. Redoing is harmless anyway:
//     a value already on the primary key is skipped;
//   - never stops for one bad row: a value that fails to decrypt is
//     reported by row id (never by value) and the job goes on.
//
// Rewrap is the default because it is cheap and never computes the
// plaintext: it replaces the 40-byte wrapped data key and the KEK version
// in the header (see docs/format.md). Full re-encrypts with fresh data keys
// (after a suspected data-key exposure, or to move deterministic values to
// the newest search key). EncryptExisting is the migration of a plaintext
// column: it encrypts plaintext values and leaves values that are already
// ciphertext alone, so it can run while the application is already writing
// ciphertext.
//
// Errors and log records name tables, columns, row ids and key versions,
// never values or keys. See docs/reencrypt.md for the operational guide.
//
// Options.MeterProvider and Options.TracerProvider (default: the global
// ones) receive rows by outcome, chunks, chunk durations and lease
// takeovers (fieldcrypt.reencrypt.*), and a span per run and per chunk.
package reencrypt
