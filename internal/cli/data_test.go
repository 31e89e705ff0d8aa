package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

func TestBackupRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	plain := make([]byte, 3<<20+12345)
	_, _ = rand.Read(plain)

	// stdin -> stdout
	r := e.runIn(string(plain), "backup", "encrypt", "--class", "critical", "--name", "test dump")
	require.Equal(t, 0, r.code, r.stderr)
	enc := r.stdout
	assert.Contains(t, r.stderr, "encrypted 3.0 MiB of class critical")
	assert.False(t, bytes.Contains([]byte(enc), plain[:64]))
	e.write("dump.fcb", enc)

	// inspect needs no key, not even a configuration
	e.ok("backup", "inspect", "--in", "dump.fcb", "--config", "/nonexistent.yaml")
	r = e.ok("backup", "inspect", "--in", "dump.fcb", "-o", "json")
	var ins backupResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ins))
	assert.Equal(t, "critical", ins.Class)
	assert.Equal(t, "test dump", ins.Name)
	assert.False(t, ins.Authenticated)

	// FILE as an argument is the same as --in FILE
	e.ok("backup", "verify", "dump.fcb")
	e.ok("backup", "inspect", "dump.fcb")
	e.code(ExitUsage, "backup", "verify", "dump.fcb", "other.fcb")
	e.code(ExitUsage, "backup", "verify", "dump.fcb", "--in", "other.fcb")

	// verify, decrypt to stdout, decrypt to a file
	r = e.ok("backup", "verify", "--in", "dump.fcb", "-o", "json")
	var ver backupResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ver))
	assert.True(t, ver.Authenticated)
	assert.Equal(t, int64(len(plain)), ver.PlaintextBytes)
	r = e.runIn(enc, "backup", "decrypt")
	require.Equal(t, 0, r.code, r.stderr)
	assert.True(t, bytes.Equal(plain, []byte(r.stdout)))
	e.ok("backup", "decrypt", "--in", "dump.fcb", "--out", "restored.bin", "--class", "critical")
	e.code(ExitError, "backup", "decrypt", "--in", "dump.fcb", "--out", "restored.bin") // never overwrites
	got, err := os.ReadFile(filepath.Join(e.dir, "restored.bin"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(plain, got))

	// --out files are created 0600 and never overwritten
	e.ok("backup", "encrypt", "--class", "low", "--in", "restored.bin", "--out", "low.fcb")
	fi, err := os.Stat(filepath.Join(e.dir, "low.fcb"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	e.code(ExitError, "backup", "encrypt", "--class", "low", "--in", "restored.bin", "--out", "low.fcb")
	// wrong class pinned
	e.code(ExitKey, "backup", "verify", "--in", "low.fcb", "--class", "critical")

	// tampering: exit 3, and decrypt --out leaves no file
	bad := []byte(enc)
	bad[len(bad)/2] ^= 1
	e.write("bad.fcb", string(bad))
	e.code(ExitIntegrity, "backup", "verify", "--in", "bad.fcb")
	e.code(ExitIntegrity, "backup", "decrypt", "--in", "bad.fcb", "--out", "bad.out")
	assert.NoFileExists(t, filepath.Join(e.dir, "bad.out"))
	e.write("trunc.fcb", enc[:len(enc)-100])
	e.code(ExitIntegrity, "backup", "verify", "--in", "trunc.fcb")
	e.code(ExitIntegrity, "backup", "inspect", "--in", "restored.bin")

	// the header names the local key by its absolute path
	assert.Equal(t, "local://"+filepath.Join(e.dir, ".fieldcrypt", "master-critical.key"), ins.MasterKeyURI)
	// a backup naming a master key another setup does not trust: exit 4,
	// before any KMS call
	other := newEnv(t)
	other.ok("init")
	r = other.code(ExitKey, "backup", "verify", "--in", filepath.Join(e.dir, "dump.fcb"))
	assert.Contains(t, r.stderr, "not in the allowed list")
	// unless the operator names it
	other.ok("backup", "verify", "--in", filepath.Join(e.dir, "dump.fcb"), "--key", "local://"+filepath.Join(e.dir, ".fieldcrypt", "master-critical.key"))

	// usage
	e.code(ExitUsage, "backup", "encrypt")
	e.code(ExitUsage, "backup", "encrypt", "--class", "public")

	log := e.auditLog()
	assert.Contains(t, log, `"event":"backup.encrypted"`)
	assert.Contains(t, log, `"event":"backup.verified"`)
	assert.Contains(t, log, `"event":"backup.decrypted"`)
}

// plainTable creates a table with a plaintext column through plain SQL.
func plainTable(t *testing.T, db *gorm.DB, rows map[int]string) {
	t.Helper()
	require.NoError(t, db.Exec(`CREATE TABLE customers (id BIGINT PRIMARY KEY, tenant_id VARCHAR(64), secret TEXT, note VARCHAR(255))`).Error)
	for id, v := range rows {
		require.NoError(t, db.Exec(`INSERT INTO customers (id, tenant_id, secret, note) VALUES (?, ?, ?, ?)`, id, "t1", v, "n").Error)
	}
}

const customersColumns = `columns:
  - {table: customers, column: secret, pk: id, class: critical, row_bound: true}
`

// flowEnv sets up a config for the database DSN with local master keys.
func flowEnv(t *testing.T, dsn string) *env {
	e := newEnv(t)
	e.write("fieldcrypt.yaml", fmt.Sprintf(`keyring: flow
database: %q
audit_log: audit.jsonl
classes:
  critical: {master_key: "local://keys/critical.key"}
  high: {master_key: "local://keys/high.key"}
%s`, dsn, customersColumns))
	return e
}

// runFlow is init -> encrypt-existing -> rotate -> reencrypt -> census.
func runFlow(t *testing.T, e *env, db *gorm.DB, secrets map[int]string) {
	r := e.ok("init")
	assert.Contains(t, r.stdout, "created  critical v1")

	var c censusResult
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "census", "-o", "json").stdout), &c))
	assert.Equal(t, int64(len(secrets)), c.Plaintext)

	// dry run changes nothing
	r = e.ok("encrypt-existing", "--column", "customers.secret", "--dry-run", "-o", "json")
	var rr reencryptResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rr))
	assert.Equal(t, int64(len(secrets)), rr.Changed)
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "census", "-o", "json").stdout), &c))
	assert.Equal(t, int64(len(secrets)), c.Plaintext)

	r = e.ok("encrypt-existing", "--column", "customers.secret", "--workers", "2", "--batch-size", "3", "--rate-limit", "10000", "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rr))
	// not a terminal: progress as JSON lines on stderr, the last one final
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	var last map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &last), r.stderr)
	assert.Equal(t, "customers.secret", last["progress"])
	assert.Equal(t, true, last["final"])
	assert.Contains(t, rr.KMS, "unwrap_calls")
	assert.Equal(t, int64(len(secrets)), rr.Changed)
	assert.True(t, rr.Columns[0].JobFinished)
	var raw []string
	require.NoError(t, db.Raw(`SELECT secret FROM customers ORDER BY id`).Scan(&raw).Error)
	for _, v := range raw {
		assert.True(t, strings.HasPrefix(v, "fc1:"), "stored value is a ciphertext")
	}

	e.code(ExitUsage, "encrypt-existing") // a migration names its column
	e.ok("keys", "rotate", "--class", "critical")
	r = e.ok("reencrypt", "--job-id", "rotation-1", "-o", "json", "--no-progress") // every configured column
	assert.Empty(t, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rr))
	assert.Equal(t, int64(len(secrets)), rr.Changed)
	// the same job id again: finished, nothing to do
	r = e.ok("reencrypt", "--column", "customers.secret", "--job-id", "rotation-1", "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rr))
	assert.Zero(t, rr.Changed)

	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "census", "-o", "json").stdout), &c))
	assert.Zero(t, c.Plaintext)
	assert.Empty(t, c.Failed)
	require.Len(t, c.Versions, 1)
	assert.Equal(t, ops.VersionCount{Class: "critical", Version: 2, Suite: "randomized", Count: int64(len(secrets))}, c.Versions[0])

	// v1 is the search key: rotate search keys, then v1 can be destroyed
	e.ok("keys", "rotate", "--class", "critical", "--search")
	e.ok("keys", "rotate", "--class", "critical", "--finish-search")
	e.afterDemotion()
	e.ok("keys", "destroy", "--class", "critical", "--version", "1", "--yes")
	e.ok("keys", "census")
}

func TestFlowSQLite(t *testing.T) {
	db, dsn := testsvc.OpenDSN(t, testsvc.SQLite)
	secrets := map[int]string{1: "canary-sqlite-1", 2: "canary-sqlite-2", 3: "canary-sqlite-3", 4: "canary-sqlite-4", 5: "canary-sqlite-5", 6: "canary-sqlite-6", 7: "canary-sqlite-7"}
	plainTable(t, db, secrets)
	e := flowEnv(t, dsn)
	runFlow(t, e, db, secrets)
	assertNoCanary(t, e.everything()+readFile(t, filepath.Join(e.dir, "audit.jsonl")), secrets)
}

func TestFlowPostgres(t *testing.T) {
	db, dsn := testsvc.OpenDSN(t, testsvc.Postgres)
	secrets := map[int]string{10: "canary-pg-10", 20: "canary-pg-20", 30: "canary-pg-30", 40: "canary-pg-40", 50: "canary-pg-50"}
	plainTable(t, db, secrets)
	e := flowEnv(t, dsn)
	runFlow(t, e, db, secrets)
	assertNoCanary(t, e.everything(), secrets)
}

func TestFlowMariaDB(t *testing.T) {
	db, dsn := testsvc.OpenDSN(t, testsvc.MySQL)
	secrets := map[int]string{10: "canary-my-10", 20: "canary-my-20", 30: "canary-my-30", 40: "canary-my-40", 50: "canary-my-50"}
	plainTable(t, db, secrets)
	e := flowEnv(t, dsn)
	runFlow(t, e, db, secrets)
	assertNoCanary(t, e.everything(), secrets)
}

func readFile(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(data)
}

func assertNoCanary(t *testing.T, output string, canaries map[int]string) {
	t.Helper()
	for _, c := range canaries {
		require.NotContains(t, output, c, "a plaintext reached the output")
	}
}
