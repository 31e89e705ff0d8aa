package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/backup"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

type record struct {
	ID     int64 `gorm:"primaryKey;autoIncrement:false"`
	Tenant string
	Email  string
}

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testsvc.Unavailable(t, name, err)
	}
	return p
}

func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s: %s", name, stderr.String())
	return out
}

// TestTenantShredReachesBackups proves the tenant crypto-shredding promise:
// take an encrypted backup, shred one tenant, restore the old backup into a
// fresh database, and find that tenant's fields unreadable and every other
// tenant's intact. The keyring lives in its own store (a file here), not in
// the backed-up database, as docs/operations.md requires.
func TestTenantShredReachesBackups(t *testing.T) {
	ctx := context.Background()
	pgDump, pgRestore := tool(t, "pg_dump"), tool(t, "pg_restore")
	dir := t.TempDir()

	// Master keys (local files for the test; KMS URIs in production).
	highKey := filepath.Join(dir, "master-high.key")
	critKey := filepath.Join(dir, "master-critical.key")
	_, err := localkms.Create(highKey)
	require.NoError(t, err)
	backupMK, err := localkms.Create(critKey)
	require.NoError(t, err)

	cfg := keyring.Config{Name: "e2e", Classes: map[string]keyring.ClassConfig{
		"high":     {MasterKey: localkms.URI(highKey), TenantScoped: true},
		"critical": {MasterKey: localkms.URI(critKey)},
	}}
	store := keyring.NewFileStore(filepath.Join(dir, "keyring.json"))
	sink := &audit.Memory{}
	kr, err := keyring.New(cfg, store, keyring.WithAudit(sink))
	require.NoError(t, err)
	defer kr.Close()
	env := envelope.New(kr)

	// The application database: two tenants' records, emails encrypted.
	db, dsn := testsvc.OpenDSN(t, testsvc.Postgres)
	require.NoError(t, db.AutoMigrate(&record{}))
	bind := func(r record) envelope.Binding {
		return envelope.Binding{Class: envelope.High, Tenant: r.Tenant, Table: "records", Column: "email", Row: fmt.Sprint(r.ID)}
	}
	want := map[int64]string{}
	for i := int64(1); i <= 40; i++ {
		tenant := "acme"
		if i%2 == 0 {
			tenant = "globex"
		}
		email := fmt.Sprintf("user%d@%s.example", i, tenant)
		want[i] = email
		r := record{ID: i, Tenant: tenant}
		ct, err := env.Seal(ctx, bind(r), []byte(email))
		require.NoError(t, err)
		r.Email = envelope.EncodeText(ct)
		require.NoError(t, db.Create(&r).Error)
	}

	// 1. Encrypted backup of the database (pg_dump | fieldcrypt backup encrypt).
	var dump bytes.Buffer
	dump.Write(run(t, nil, pgDump, "-Fc", "--no-owner", "-d", dsn))
	require.Contains(t, dump.String(), "PGDMP")
	require.NotContains(t, dump.String(), "acme.example", "the dump itself holds only ciphertext")
	var fcb bytes.Buffer
	_, err = backup.Encrypt(ctx, &fcb, &dump, backupMK, backup.EncryptOptions{Class: envelope.Critical, Name: "e2e before shred"})
	require.NoError(t, err)

	// 2. Shred tenant acme.
	rep, err := kr.ShredTenant(ctx, "acme")
	require.NoError(t, err)
	require.NotEmpty(t, rep.Destroyed)
	for _, d := range rep.Destroyed {
		assert.Equal(t, "acme", d.Ref.Tenant)
		assert.Equal(t, keyring.StateDestroyed, d.State)
		assert.False(t, d.DestroyedAt.IsZero())
	}
	var shredEvents int
	for _, e := range sink.Events() {
		if e.Type == audit.TenantShredded {
			shredEvents++
			assert.Equal(t, "acme", e.Tenant)
			assert.NotEmpty(t, e.Actor, "the shred report says by whom")
		}
	}
	assert.Equal(t, 1, shredEvents)

	// 3. Restore the old backup into a fresh database.
	restoredDB, restoredDSN := testsvc.OpenDSN(t, testsvc.Postgres)
	var restored bytes.Buffer
	_, err = backup.Decrypt(ctx, &restored, &fcb, kms.OpenerFunc(kms.Open), backup.DecryptOptions{Class: envelope.Critical, KeyURIs: []string{backupMK.URI()}})
	require.NoError(t, err)
	run(t, restored.Bytes(), pgRestore, "--no-owner", "-d", restoredDSN)

	// 4. Read the restored rows with a new application process (fresh
	// keyring cache over the same keyring store).
	kr2, err := keyring.New(cfg, store)
	require.NoError(t, err)
	defer kr2.Close()
	check := func(t *testing.T, db *gorm.DB, env *envelope.Envelope) {
		var rows []record
		require.NoError(t, db.Order("id").Find(&rows).Error)
		require.Len(t, rows, 40)
		for _, r := range rows {
			pt, err := env.Open(ctx, bind(r), []byte(r.Email))
			if r.Tenant == "acme" {
				require.Error(t, err, "row %d of the shredded tenant must be unreadable", r.ID)
				assert.True(t, errors.Is(err, envelope.ErrKeyDestroyed), "row %d: %v", r.ID, err)
				assert.NotContains(t, err.Error(), want[r.ID])
				continue
			}
			require.NoError(t, err, "row %d of another tenant must be intact", r.ID)
			assert.Equal(t, want[r.ID], string(pt))
		}
	}
	t.Run("restored old backup", func(t *testing.T) { check(t, restoredDB, envelope.New(kr2)) })
	t.Run("live database", func(t *testing.T) { check(t, db, envelope.New(kr2)) })
	t.Run("the shredding process", func(t *testing.T) { check(t, restoredDB, env) })

	// The keyring file keeps tombstones, never the destroyed key material.
	raw, err := os.ReadFile(filepath.Join(dir, "keyring.json"))
	require.NoError(t, err)
	assert.Contains(t, string(raw), "destroyed")
}
