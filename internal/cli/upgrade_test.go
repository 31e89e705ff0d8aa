package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

// TestRunFromAnotherDirectory: init stores canonical master key URIs, so
// the CLI run from elsewhere (--config) and an application that builds its
// keyring.Config in code, running in yet another directory and opening
// master keys through the plain kms registry, both read the keys; a
// changed master key in the configuration is not silently bypassed.
func TestRunFromAnotherDirectory(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	project := e.dir
	cfgPath := filepath.Join(project, "fieldcrypt.yaml")

	e.dir = t.TempDir() // the operator's shell is elsewhere
	e.ok("--config", cfgPath, "keys", "rotate", "--class", "critical")
	var keks []kekJSON
	require.NoError(t, json.Unmarshal([]byte(e.ok("--config", cfgPath, "keys", "list", "-o", "json").stdout), &keks))
	require.NotEmpty(t, keks)

	// The application: configured in code, run from a third directory.
	t.Chdir(t.TempDir())
	ctx := context.Background()
	cfg := keyring.Config{Name: config.DefaultKeyring, Classes: map[string]keyring.ClassConfig{}}
	for _, c := range []string{"critical", "high", "moderate", "low"} {
		cfg.Classes[c] = keyring.ClassConfig{MasterKey: localkms.URI(filepath.Join(project, ".fieldcrypt", "master-"+c+".key"))}
	}
	db, err := config.OpenDB(ctx, mustDSN(t, project))
	require.NoError(t, err)
	defer config.CloseDB(db)
	kr, err := keyring.New(cfg, keyring.NewGormStoreNoMigrate(db))
	require.NoError(t, err)
	defer kr.Close()
	for _, v := range []uint32{1, 2} {
		_, err := kr.KEK(ctx, envelope.KEKRef{Class: envelope.Critical, Version: v})
		require.NoError(t, err, "v%d", v)
	}
	b := envelope.Binding{Class: envelope.Low, Table: "t", Column: "c", Row: "1"}
	env := envelope.New(kr)
	ct, err := env.Seal(ctx, b, []byte("hello"))
	require.NoError(t, err)
	_, err = env.Open(ctx, b, ct)
	require.NoError(t, err)

	// A different master key configured for a class is used, not bypassed
	// by what the store says: the stored KEKs do not unwrap under it.
	other := filepath.Join(t.TempDir(), "other.key")
	_, err = localkms.Create(other)
	require.NoError(t, err)
	cfg.Classes["moderate"] = keyring.ClassConfig{MasterKey: localkms.URI(other)}
	kr2, err := keyring.New(cfg, keyring.NewGormStoreNoMigrate(db))
	require.NoError(t, err)
	defer kr2.Close()
	_, err = kr2.PrimaryKEK(ctx, envelope.Scope{Class: envelope.Moderate})
	require.ErrorIs(t, err, keyring.ErrUntrustedKey)
}

// legacyKeyring turns the keyring init made into what an earlier
// fieldcrypt wrote: no class keys, no MACs, relative local:// URIs.
func legacyKeyring(t *testing.T, e *env) {
	t.Helper()
	db, err := config.OpenDB(context.Background(), mustDSN(t, e.dir))
	require.NoError(t, err)
	defer config.CloseDB(db)
	for _, col := range []string{"epoch", "mac", "class_key_uri", "class_key_wrapped", "class_key_created_at"} {
		require.NoError(t, db.Exec("ALTER TABLE "+keyring.ScopeTable+" DROP COLUMN "+col).Error)
	}
	require.NoError(t, db.Exec("ALTER TABLE "+keyring.KEKTable+" DROP COLUMN demoted_at").Error)
	var uris []string
	require.NoError(t, db.Raw("SELECT DISTINCT master_key_uri FROM "+keyring.KEKTable).Scan(&uris).Error)
	for _, u := range uris {
		rel := "local://" + strings.TrimPrefix(strings.TrimPrefix(u, "local://"), e.dir+"/")
		require.NoError(t, db.Exec("UPDATE "+keyring.KEKTable+" SET master_key_uri = ? WHERE master_key_uri = ?", rel, u).Error)
	}
}

func TestUpgradeLegacyKeyring(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	legacyKeyring(t, e)

	// The old schema: refused, naming the command that adds the columns.
	r := e.code(ExitUsage, "keys", "list")
	assert.Contains(t, r.stderr, "fieldcrypt keys upgrade")
	// init adds them (and nothing else in an existing keyring), then
	// refuses the unsealed keyring like every command.
	r = e.code(ExitKey, "init")
	assert.Contains(t, r.stderr, "fieldcrypt keys upgrade")
	r = e.code(ExitKey, "keys", "list")
	assert.Contains(t, r.stderr, "fieldcrypt keys upgrade")
	e.code(ExitKey, "keys", "rotate", "--class", "low")

	// The migration window.
	cfgPath := filepath.Join(e.dir, "fieldcrypt.yaml")
	orig, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfgPath, append(append([]byte(nil), orig...), "allow_unsealed_store: true\n"...), 0o600))
	e.ok("keys", "list")
	assert.Contains(t, e.auditLog(), `"event":"keyring.unsealed"`)
	require.NoError(t, os.WriteFile(cfgPath, orig, 0o600))

	// Upgrade: asks, seals, moves the relative URIs to absolute ones.
	r = e.code(ExitRefused, "keys", "upgrade")
	assert.Contains(t, r.stderr, "--yes")
	r = e.ok("keys", "upgrade", "--yes", "-o", "json")
	var out []ops.UpgradeResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	require.Len(t, out, 4)
	for _, u := range out {
		assert.True(t, u.ClassKeyCreated, u.Class)
		assert.Equal(t, []string{u.Class}, u.Sealed)
		assert.Equal(t, 1, u.Renamed)
	}
	var keks []kekJSON
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "list", "-o", "json").stdout), &keks))
	for _, k := range keks {
		assert.Equal(t, "local://"+filepath.Join(e.dir, ".fieldcrypt", "master-"+k.Class+".key"), k.MasterKeyURI)
	}
	e.ok("keys", "rotate", "--class", "low")
	r = e.ok("keys", "upgrade", "--yes")
	assert.Contains(t, r.stdout, "low: 1 scopes already sealed")
	assert.Contains(t, e.auditLog(), `"event":"keyring.sealed"`)

	// Tampering afterwards: exit 3 (integrity), not 4.
	db, err := config.OpenDB(context.Background(), mustDSN(t, e.dir))
	require.NoError(t, err)
	defer config.CloseDB(db)
	require.NoError(t, db.Exec("UPDATE "+keyring.KEKTable+" SET state = 'retired' WHERE class = 'low' AND version = 1").Error)
	r = e.code(ExitIntegrity, "keys", "list")
	assert.Contains(t, r.stderr, "MAC does not verify")
	assert.Contains(t, e.auditLog(), `"event":"keyring.tamper"`)
}

// mustDSN is the DSN of the SQLite database init created in dir.
func mustDSN(t *testing.T, dir string) config.DSN {
	t.Helper()
	d, err := config.ParseDSN(config.DefaultDatabase, dir)
	require.NoError(t, err)
	return d
}

func TestUpgradeAddsColumns(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	legacyKeyring(t, e)
	e.ok("keys", "upgrade", "--yes")
	e.ok("keys", "rotate", "--class", "critical")
	var keks []kekJSON
	require.NoError(t, json.Unmarshal([]byte(e.ok("keys", "list", "-o", "json", "--class", "critical").stdout), &keks))
	require.Len(t, keks, 2)
	assert.NotNil(t, keks[0].DemotedAt)
}
