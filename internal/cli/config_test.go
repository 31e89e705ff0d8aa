package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/keyring"
)

const sampleConfig = `keyring: app
database: sqlite://from-file.db
tenant: file-tenant
classes:
  critical: {master_key: "local://keys/critical.key"}
  high: {master_key: "local://keys/high.key", tenant_scoped: true}
columns:
  - {table: patients, column: ssn, class: critical, row_bound: true}
  - {table: patients, column: email, class: high, mode: deterministic, encoding: binary, tenant_column: tenant_id}
`

func TestLoadConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fieldcrypt.yaml"), []byte(sampleConfig), 0o600))
	envs := map[string]string{}
	getenv := func(k string) string { return envs[k] }

	// file only
	cfg, err := LoadConfig(dir, getenv, Overrides{})
	require.NoError(t, err)
	assert.Equal(t, "app", cfg.Keyring)
	assert.Equal(t, "sqlite://from-file.db", cfg.Database)
	assert.Equal(t, filepath.Join(dir, "fieldcrypt.yaml"), cfg.Path)
	assert.Equal(t, "local://keys/critical.key", cfg.Classes["critical"].MasterKey)
	require.Len(t, cfg.Columns, 2)
	assert.Equal(t, ColumnConfig{Table: "patients", Column: "ssn", PK: "id", Class: "critical", Mode: "randomized", RowBound: true, Encoding: "text"}, cfg.Columns[0])
	assert.True(t, cfg.Columns[1].Deterministic())
	assert.True(t, cfg.Columns[1].Binary())
	require.NoError(t, cfg.Validate(true))

	// env beats file
	envs = map[string]string{EnvDatabase: "sqlite://from-env.db", EnvTenant: "env-tenant", "FIELDCRYPT_MASTER_KEY_CRITICAL": "local://env.key"}
	cfg, err = LoadConfig(dir, getenv, Overrides{})
	require.NoError(t, err)
	assert.Equal(t, "sqlite://from-env.db", cfg.Database)
	assert.Equal(t, "env-tenant", cfg.Tenant)
	assert.Equal(t, "local://env.key", cfg.Classes["critical"].MasterKey)
	assert.True(t, cfg.Classes["high"].TenantScoped, "env master keys keep the file's other settings")

	// flags beat env
	cfg, err = LoadConfig(dir, getenv, Overrides{Database: "sqlite://from-flag.db", MasterKeys: []string{"critical=local://flag.key"}, Set: map[string]bool{"tenant": true}})
	require.NoError(t, err)
	assert.Equal(t, "sqlite://from-flag.db", cfg.Database)
	assert.Equal(t, "local://flag.key", cfg.Classes["critical"].MasterKey)
	assert.Equal(t, "", cfg.Tenant, "an explicitly empty flag overrides")

	// defaults without any file
	empty := t.TempDir()
	cfg, err = LoadConfig(empty, func(string) string { return "" }, Overrides{})
	require.NoError(t, err)
	assert.Equal(t, DefaultDatabase, cfg.Database)
	assert.Equal(t, DefaultKeyring, cfg.Keyring)
	assert.Empty(t, cfg.Path)

	// FIELDCRYPT_CONFIG names the file
	other := filepath.Join(t.TempDir(), "other.yaml")
	require.NoError(t, os.WriteFile(other, []byte("keyring: other\n"), 0o600))
	cfg, err = LoadConfig(empty, func(k string) string {
		if k == EnvConfig {
			return other
		}
		return ""
	}, Overrides{})
	require.NoError(t, err)
	assert.Equal(t, "other", cfg.Keyring)
}

func TestValidateNamesTheEntry(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown field", "keyring: a\nclasess: {}\n", []string{"clasess"}},
		{"bad class name", "classes:\n  secret: {master_key: local://a}\n", []string{`class "secret"`}},
		{"shared master key", "classes:\n  critical: {master_key: local://a}\n  high: {master_key: local://a}\n", []string{"also the master key"}},
		{"bad URI", "classes:\n  critical: {master_key: s3://bucket/key}\n", []string{"critical", "unknown scheme"}},
		{"column without master key", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: t, column: c, class: high}\n", []string{"columns[0] (t.c)", "no master key"}},
		{"bad column mode", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: t, column: c, class: critical, mode: fancy}\n", []string{"columns[0] (t.c)", `mode "fancy"`}},
		{"deterministic row-bound", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: t, column: c, class: critical, mode: deterministic, row_bound: true}\n", []string{"columns[0]", "row_bound"}},
		{"bad identifier", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: \"t; drop\", column: c, class: critical}\n", []string{"table \"t; drop\""}},
		{"duplicate column", "classes:\n  critical: {master_key: local://a}\ncolumns:\n  - {table: t, column: c, class: critical}\n  - {table: t, column: c, class: critical}\n", []string{"columns[1] (t.c): listed twice"}},
		{"bad database", "database: oracle://x\nclasses:\n  critical: {master_key: local://a}\n", []string{"database", "oracle"}},
		{"bad duration", "cache_ttl: soon\nclasses:\n  critical: {master_key: local://a}\n", []string{"cache_ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.write("fieldcrypt.yaml", tt.yaml)
			r := e.code(ExitUsage, "config", "validate")
			for _, w := range tt.want {
				assert.Contains(t, r.stderr, w)
			}
		})
	}
}

func TestConfigShowRedactsPassword(t *testing.T) {
	e := newEnv(t)
	e.vars[EnvDatabase] = "postgres://app:hunter2-secret@db.internal:5432/app?sslmode=require"
	for _, format := range []string{"text", "json"} {
		r := e.ok("config", "show", "-o", format)
		assert.NotContains(t, r.all(), "hunter2-secret")
		assert.Contains(t, r.stdout, "db.internal")
	}
}

func TestWriteAndUpdateConfigKeepsComments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("# top comment\nclasses:\n  critical:\n    master_key: local://old.key # old key\n"), 0o600))
	require.NoError(t, updateConfigMasterKey(path, "critical", "local://new.key"))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	s := string(data)
	assert.Contains(t, s, "# top comment")
	var cfg Config
	require.NoError(t, decodeConfig(data, &cfg))
	assert.Equal(t, ClassConfig{MasterKey: "local://new.key", PreviousMasterKeys: []string{"local://old.key"}}, cfg.Classes["critical"],
		"the old master key stays trusted, as a previous one")
	require.NoError(t, updateConfigMasterKey(path, "critical", "local://old.key"))
	data, err = os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, decodeConfig(data, &cfg))
	assert.Equal(t, ClassConfig{MasterKey: "local://old.key", PreviousMasterKeys: []string{"local://new.key"}}, cfg.Classes["critical"], "back again")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestKeyringConfigCanonicalMasterKeys(t *testing.T) {
	e := newEnv(t)
	e.write("fieldcrypt.yaml", `classes:
  low:
    master_key: local://keys/low-2.key
    previous_master_keys: [local://keys/low.key, "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"]
allow_unsealed_store: true
`)
	cfg, err := LoadConfig(t.TempDir(), func(string) string { return "" }, Overrides{ConfigPath: filepath.Join(e.dir, "fieldcrypt.yaml")})
	require.NoError(t, err)
	kc, err := cfg.KeyringConfig()
	require.NoError(t, err)
	assert.True(t, kc.AllowUnsealedStore)
	assert.Equal(t, keyring.ClassConfig{
		MasterKey: "local://" + filepath.Join(e.dir, "keys", "low-2.key"),
		PreviousMasterKeys: []string{"local://" + filepath.Join(e.dir, "keys", "low.key"),
			"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
	}, kc.Classes["low"], "relative to the config file, not the working directory")
	assert.Equal(t, map[string]string{
		"local://keys/low-2.key": "local://" + filepath.Join(e.dir, "keys", "low-2.key"),
		"local://keys/low.key":   "local://" + filepath.Join(e.dir, "keys", "low.key"),
	}, cfg.legacyURIs())

	e.write("fieldcrypt.yaml", "classes:\n  low: {master_key: local:///k/low.key, previous_master_keys: [local:///k/low.key]}\n")
	r := e.code(ExitUsage, "config", "validate")
	assert.Contains(t, r.stderr, "listed twice")
}
