package reencrypt

import "strings"

// Cleanup says how to finish a migration on one database: EncryptExisting
// replaces each plaintext with its ciphertext, but the database keeps the
// old row versions (dead tuples, undo, freed pages) and its logs (WAL,
// binlog) until they are rebuilt, recycled or purged, and backups taken
// before keep them for good. docs/operations.md "After a migration" is the
// runbook.
type Cleanup struct {
	Database string // the dialect: postgres, mysql or sqlite
	// Command is the one statement that matters, to run once the
	// migration is finished: it rewrites the table without the old row
	// versions.
	Command string
	// Then lists what else holds the old plaintexts on this database.
	Then string
}

// String is the advice on one line, as encrypt-existing prints it.
func (c Cleanup) String() string {
	return "old plaintexts remain on disk until you run: " + c.Command + "  (then: " + c.Then + "; see docs/operations.md \"After a migration\")"
}

// AfterMigration returns how to clear the plaintexts a migration of table
// left on disk, for dialect as GORM names it (db.Dialector.Name():
// "postgres", "mysql", "sqlite"; "pgx", "mariadb" and "sqlite3" are
// accepted too).
func AfterMigration(dialect, table string) Cleanup {
	switch strings.ToLower(dialect) {
	case "postgres", "postgresql", "pgx":
		return Cleanup{Database: "postgres",
			Command: "VACUUM FULL " + table + "; CHECKPOINT;",
			Then:    "WAL segments, archived WAL, replication slots, replicas and base backups taken before it still hold them: let WAL recycle, expire the archive and old base backups, rebuild replicas"}
	case "mysql", "mariadb":
		return Cleanup{Database: "mysql",
			Command: "OPTIMIZE TABLE " + table + ";",
			Then:    "binary logs (PURGE BINARY LOGS BEFORE NOW()), undo logs until purged, replicas and backups taken before it still hold them"}
	default:
		return Cleanup{Database: "sqlite",
			Command: "VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
			Then:    "copies of the database file, its -wal file and backups taken before it still hold them; PRAGMA secure_delete=ON keeps later deletes from leaving plaintext behind"}
	}
}
