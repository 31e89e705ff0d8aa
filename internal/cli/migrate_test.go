package cli

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// TestEncryptExistingBlindIndex is issue 16 §1 and §2 through the CLI: a
// column configured with its blind index is searchable once
// encrypt-existing has run, census counts rows whose index is missing, a
// rerun repairs them, and encrypt-existing ends with the command that
// clears the old plaintexts from this database's files.
func TestEncryptExistingBlindIndex(t *testing.T) {
	cleanup := map[testsvc.Dialect]string{
		testsvc.SQLite:   "VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
		testsvc.Postgres: "VACUUM FULL customers; CHECKPOINT;",
		testsvc.MySQL:    "OPTIMIZE TABLE customers;",
	}
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db, dsn := testsvc.OpenDSN(t, d)
			secrets := map[int]string{}
			for i := 1; i <= 12; i++ {
				secrets[i] = fmt.Sprintf("idx-canary-%02d", i)
			}
			plainTable(t, db, secrets)
			require.NoError(t, db.Exec("ALTER TABLE customers ADD secret_bidx VARCHAR(64) NULL").Error)
			e := newEnv(t)
			e.write("fieldcrypt.yaml", fmt.Sprintf(`keyring: flow
database: %q
classes:
  critical: {master_key: "local://keys/critical.key"}
columns:
  - {table: customers, column: secret, pk: id, class: critical, row_bound: true, blind_index: secret_bidx}
`, dsn))
			e.ok("init")

			r := e.ok("encrypt-existing", "--column", "customers.secret", "--batch-size", "5")
			assert.Contains(t, r.stdout, "12 encrypted")
			assert.Contains(t, r.stdout, "The old plaintexts are still on disk")
			assert.Contains(t, r.stdout, "  "+cleanup[d]+"\n")
			assert.Contains(t, r.stdout, `docs/operations.md "After a migration"`)
			var rr reencryptResult
			require.NoError(t, json.Unmarshal([]byte(e.ok("encrypt-existing", "--column", "customers.secret", "-o", "json").stdout), &rr))
			require.NotNil(t, rr.AfterMigration)
			assert.Equal(t, cleanup[d], rr.Columns[0].Cleanup)
			r = e.ok("encrypt-existing", "--column", "customers.secret", "--dry-run")
			assert.NotContains(t, r.stdout, "still on disk", "a dry run changes nothing on disk")

			var res console.Result
			require.NoError(t, json.Unmarshal([]byte(e.ok("show", "customers", "--where", "secret="+secrets[7], "-o", "json").stdout), &res))
			require.Len(t, res.Rows, 1, "the migrated row is found by its blind index")

			var c censusResult
			require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "census", "-o", "json").stdout), &c))
			assert.Zero(t, c.MissingIndex)
			assert.Equal(t, map[string]int64{"secret_bidx": 0}, c.Columns[0].MissingIndex)

			// An index lost (a migration made before indexes were written).
			require.NoError(t, db.Exec("UPDATE customers SET secret_bidx = NULL WHERE id <= 4").Error)
			require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "census", "-o", "json").stdout), &c))
			assert.Equal(t, int64(4), c.MissingIndex)
			r = e.ok("keys", "census", "--headers-only")
			assert.Contains(t, r.stdout, "4 without their blind index")
			assert.Contains(t, r.stdout, "customers.secret: 4 encrypted values have no blind index in secret_bidx")
			r = e.ok("encrypt-existing", "--column", "customers.secret")
			assert.Contains(t, r.stdout, "4 blind indexes written")
			require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "census", "-o", "json").stdout), &c))
			assert.Zero(t, c.MissingIndex)
			require.NoError(t, json.Unmarshal([]byte(e.ok("show", "customers", "--where", "secret="+secrets[2], "-o", "json").stdout), &res))
			require.Len(t, res.Rows, 1)

			// The silent case: the table has gormcrypt's index
			// column but the configuration does not name it. census says
			// so; encrypt-existing refuses (exit 2) rather than produce
			// unsearchable rows.
			e.write("fieldcrypt.yaml", fmt.Sprintf(`keyring: flow
database: %q
classes:
  critical: {master_key: "local://keys/critical.key"}
columns:
  - {table: customers, column: secret, pk: id, class: critical, row_bound: true}
`, dsn))
			r = e.ok("keys", "census", "--headers-only")
			assert.Contains(t, r.stdout, "customers.secret: the table has secret_bidx (a gormcrypt blind index) but the configuration names no blind_index")
			r = e.code(ExitUsage, "encrypt-existing", "--column", "customers.secret")
			assert.Contains(t, r.stderr, "Add blind_index: secret_bidx")
		})
	}
}
