// Package e2e holds end-to-end tests that cross packages: keyring, envelope,
// gormcrypt, backup and the real databases and tools (pg_dump, pg_restore).
package e2e
