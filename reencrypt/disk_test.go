package reencrypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// canaries returns n distinct plaintexts nobody else writes.
func canaries(n int) []string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("canary-%s-%05d", tag, i)
	}
	return out
}

func countIn(data []byte, canaries []string) int {
	n := 0
	for _, c := range canaries {
		if bytes.Contains(data, []byte(c)) {
			n++
		}
	}
	return n
}

// statements splits a Cleanup.Command into its statements (VACUUM cannot
// run in the implicit transaction of a multi-statement query).
func statements(cmd string) []string {
	var out []string
	for _, s := range strings.Split(cmd, ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// seedCanaries creates items(id, val text) with an index on val, as a
// legacy column often has, holding the canaries in plaintext.
func seedCanaries(t *testing.T, db *gorm.DB, cs []string, with string) Column {
	t.Helper()
	col := testColumn("items", true)
	require.NoError(t, db.Exec("CREATE TABLE items (id BIGINT NOT NULL PRIMARY KEY, val TEXT NULL, tenant VARCHAR(64) NULL)"+with).Error)
	require.NoError(t, db.Exec("CREATE INDEX items_val ON items (val)").Error)
	for start := 0; start < len(cs); start += 200 {
		var ph []string
		var args []any
		for i := start; i < min(start+200, len(cs)); i++ {
			ph = append(ph, "(?, ?)")
			args = append(args, i+1, cs[i])
		}
		require.NoError(t, db.Exec("INSERT INTO items (id, val) VALUES "+strings.Join(ph, ","), args...).Error)
	}
	return col
}

// TestAfterMigrationPostgres is issue 16 §2: after a migration the table
// file still holds the old plaintexts (dead tuples, and the index on the
// old column); the runbook's PostgreSQL steps, the command
// AfterMigration gives (VACUUM FULL; CHECKPOINT), leave none in the new
// table file, its TOAST table or its indexes. The files are read through
// pg_read_binary_file as the superuser (the server may be on another
// host); CI must not skip it.
func TestAfterMigrationPostgres(t *testing.T) {
	ctx := context.Background()
	db := testsvc.Open(t, testsvc.Postgres)
	var name string
	require.NoError(t, db.Raw("SELECT current_database()").Scan(&name).Error)
	su, err := gorm.Open(postgres.Open(fmt.Sprintf("host=127.0.0.1 port=5432 user=postgres dbname=%s sslmode=disable", name)), &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)})
	if err == nil {
		err = su.Exec("SELECT 1").Error
	}
	if err != nil {
		if testsvc.InCI() {
			t.Fatalf("the PostgreSQL superuser (postgres, trust) is needed to read table files: %v", err)
		}
		t.Skipf("no PostgreSQL superuser: %v", err)
	}
	t.Cleanup(func() {
		if s, err := su.DB(); err == nil {
			_ = s.Close()
		}
	})

	cs := canaries(2000)
	// Autovacuum off: what the test sees does not depend on its timing.
	col := seedCanaries(t, db, cs, " WITH (autovacuum_enabled = false, toast.autovacuum_enabled = false)")
	_, env := newKeys()
	sum, err := Run(ctx, db, env, col, Options{Mode: EncryptExisting, BatchSize: 250})
	require.NoError(t, err)
	require.Equal(t, int64(len(cs)), sum.Changed)
	var live []string
	require.NoError(t, db.Raw("SELECT val FROM items").Scan(&live).Error)
	require.Zero(t, countIn([]byte(strings.Join(live, "\n")), cs), "every live value is a ciphertext")

	// files reads the table's file, its TOAST table's and its indexes'
	// (main fork; each well under 1 GiB, so one segment).
	files := func() (map[string][]byte, []string) {
		t.Helper()
		require.NoError(t, su.Exec("CHECKPOINT").Error) // dirty pages reach the files
		var paths []string
		require.NoError(t, su.Raw(`SELECT pg_relation_filepath(c.oid) FROM pg_class c
			WHERE c.oid = 'items'::regclass
			   OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'items'::regclass)
			   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'items'::regclass
			                 OR indrelid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'items'::regclass))`).Scan(&paths).Error)
		out := map[string][]byte{}
		for _, p := range paths {
			var data []byte
			require.NoError(t, su.Raw("SELECT pg_read_binary_file(?, 0, (pg_stat_file(?)).size, true)", p, p).Row().Scan(&data))
			out[p] = data
		}
		return out, paths
	}
	before, oldPaths := files()
	var all []byte
	for _, data := range before {
		all = append(all, data...)
	}
	found := countIn(all, cs)
	t.Logf("before the runbook: %d of %d canaries in %d files (%d bytes)", found, len(cs), len(before), len(all))
	require.Greater(t, found, len(cs)/2, "the test sees the table file: the old plaintexts are in it")

	// A plain VACUUM frees the dead tuples' space but does not overwrite
	// it (the issue saw 259,651 of 260,413 plaintexts left): logged, not
	// asserted, as it depends on the server's page layout.
	require.NoError(t, su.Exec("VACUUM items").Error)
	vacuumed, _ := files()
	all = all[:0]
	for _, data := range vacuumed {
		all = append(all, data...)
	}
	t.Logf("after a plain VACUUM: %d of %d canaries still in the files", countIn(all, cs), len(cs))

	c := AfterMigration(db.Dialector.Name(), col.Table)
	require.Equal(t, "VACUUM FULL items; CHECKPOINT;", c.Command)
	for _, s := range statements(c.Command) {
		require.NoError(t, su.Exec(s).Error, s)
	}
	after, newPaths := files()
	size := 0
	for p, data := range after {
		size += len(data)
		assert.Zero(t, countIn(data, cs), "%s: no canary after the runbook", p)
	}
	require.Greater(t, size, 2000*80, "the new files hold the ciphertexts")
	// The old files are gone (unlinked at the checkpoint) or empty.
	for _, p := range oldPaths {
		if !contains(newPaths, p) {
			var data []byte
			require.NoError(t, su.Raw("SELECT coalesce(pg_read_binary_file(?, 0, coalesce((pg_stat_file(?, true)).size, 0), true), ''::bytea)", p, p).Row().Scan(&data))
			assert.Zero(t, countIn(data, cs), "%s: the old file holds no canary", p)
		}
	}
	require.NoError(t, db.Raw("SELECT val FROM items").Scan(&live).Error)
	assert.Len(t, live, len(cs), "the data is still there")
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestAfterMigrationSQLite: the same for SQLite, on the database file and
// its -wal file (the runbook: VACUUM, then a TRUNCATE checkpoint).
func TestAfterMigrationSQLite(t *testing.T) {
	ctx := context.Background()
	db, dsn := testsvc.OpenDSN(t, testsvc.SQLite)
	path := strings.TrimPrefix(dsn, "sqlite://")
	cs := canaries(2000)
	col := seedCanaries(t, db, cs, "")
	_, env := newKeys()
	sum, err := Run(ctx, db, env, col, Options{Mode: EncryptExisting, BatchSize: 250})
	require.NoError(t, err)
	require.Equal(t, int64(len(cs)), sum.Changed)
	read := func() []byte {
		var all []byte
		for _, p := range []string{path, path + "-wal"} {
			data, err := os.ReadFile(p)
			if !os.IsNotExist(err) {
				require.NoError(t, err)
			}
			all = append(all, data...)
		}
		return all
	}
	found := countIn(read(), cs)
	t.Logf("before the runbook: %d of %d canaries in the database and WAL files", found, len(cs))
	require.Greater(t, found, len(cs)/2, "the old plaintexts are in the files")
	c := AfterMigration(db.Dialector.Name(), col.Table)
	require.Equal(t, "VACUUM; PRAGMA wal_checkpoint(TRUNCATE);", c.Command)
	for _, s := range statements(c.Command) {
		require.NoError(t, db.Exec(s).Error, s)
	}
	assert.Zero(t, countIn(read(), cs), "no canary after the runbook")
}

func TestAfterMigrationAdvice(t *testing.T) {
	for _, tc := range []struct{ dialect, db, cmd string }{
		{"postgres", "postgres", "VACUUM FULL people; CHECKPOINT;"},
		{"mysql", "mysql", "OPTIMIZE TABLE people;"},
		{"MariaDB", "mysql", "OPTIMIZE TABLE people;"},
		{"sqlite", "sqlite", "VACUUM; PRAGMA wal_checkpoint(TRUNCATE);"},
	} {
		c := AfterMigration(tc.dialect, "people")
		assert.Equal(t, tc.db, c.Database)
		assert.Equal(t, tc.cmd, c.Command)
		assert.Contains(t, c.String(), tc.cmd)
		assert.Contains(t, c.String(), "After a migration")
		assert.NotEmpty(t, c.Then)
	}
}
