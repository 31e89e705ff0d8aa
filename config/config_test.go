package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
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
	cfg, err := Load(dir, getenv, Overrides{})
	require.NoError(t, err)
	assert.Equal(t, "app", cfg.Keyring)
	assert.Equal(t, "sqlite://from-file.db", cfg.Database)
	assert.Equal(t, filepath.Join(dir, "fieldcrypt.yaml"), cfg.Path)
	assert.Equal(t, "local://keys/critical.key", cfg.Classes["critical"].MasterKey)
	require.Len(t, cfg.Columns, 2)
	assert.Equal(t, Column{Table: "patients", Column: "ssn", PK: "id", Class: "critical", Mode: "randomized", RowBound: true, Encoding: "text"}, cfg.Columns[0])
	assert.True(t, cfg.Columns[1].Deterministic())
	assert.True(t, cfg.Columns[1].Binary())
	require.NoError(t, cfg.Validate(true))

	// env beats file
	envs = map[string]string{EnvDatabase: "sqlite://from-env.db", EnvTenant: "env-tenant", "FIELDCRYPT_MASTER_KEY_CRITICAL": "local://env.key"}
	cfg, err = Load(dir, getenv, Overrides{})
	require.NoError(t, err)
	assert.Equal(t, "sqlite://from-env.db", cfg.Database)
	assert.Equal(t, "env-tenant", cfg.Tenant)
	assert.Equal(t, "local://env.key", cfg.Classes["critical"].MasterKey)
	assert.True(t, cfg.Classes["high"].TenantScoped, "env master keys keep the file's other settings")

	// flags beat env
	cfg, err = Load(dir, getenv, Overrides{Database: "sqlite://from-flag.db", MasterKeys: []string{"critical=local://flag.key"}, Set: map[string]bool{"tenant": true}})
	require.NoError(t, err)
	assert.Equal(t, "sqlite://from-flag.db", cfg.Database)
	assert.Equal(t, "local://flag.key", cfg.Classes["critical"].MasterKey)
	assert.Equal(t, "", cfg.Tenant, "an explicitly empty flag overrides")

	// defaults without any file
	empty := t.TempDir()
	cfg, err = Load(empty, func(string) string { return "" }, Overrides{})
	require.NoError(t, err)
	assert.Equal(t, DefaultDatabase, cfg.Database)
	assert.Equal(t, DefaultKeyring, cfg.Keyring)
	assert.Empty(t, cfg.Path)

	// FIELDCRYPT_CONFIG names the file
	other := filepath.Join(t.TempDir(), "other.yaml")
	require.NoError(t, os.WriteFile(other, []byte("keyring: other\n"), 0o600))
	cfg, err = Load(empty, func(k string) string {
		if k == EnvConfig {
			return other
		}
		return ""
	}, Overrides{})
	require.NoError(t, err)
	assert.Equal(t, "other", cfg.Keyring)
}

func TestWriteAndUpdateConfigKeepsComments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("# top comment\nclasses:\n  critical:\n    master_key: local://old.key # old key\n"), 0o600))
	require.NoError(t, UpdateMasterKey(path, "critical", "local://new.key"))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	s := string(data)
	assert.Contains(t, s, "# top comment")
	var cfg Config
	require.NoError(t, decodeConfig(data, &cfg))
	assert.Equal(t, keyring.ClassConfig{MasterKey: "local://new.key", PreviousMasterKeys: []string{"local://old.key"}}, cfg.Classes["critical"],
		"the old master key stays trusted, as a previous one")
	require.NoError(t, UpdateMasterKey(path, "critical", "local://old.key"))
	data, err = os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, decodeConfig(data, &cfg))
	assert.Equal(t, keyring.ClassConfig{MasterKey: "local://old.key", PreviousMasterKeys: []string{"local://new.key"}}, cfg.Classes["critical"], "back again")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestKeyringConfigCanonicalMasterKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fieldcrypt.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`classes:
  low:
    master_key: local://keys/low-2.key
    previous_master_keys: [local://keys/low.key, "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"]
allow_unsealed_store: true
`), 0o600))
	cfg, err := Load(t.TempDir(), func(string) string { return "" }, Overrides{ConfigPath: path})
	require.NoError(t, err)
	kc, err := cfg.KeyringConfig()
	require.NoError(t, err)
	assert.True(t, kc.AllowUnsealedStore)
	assert.Equal(t, keyring.ClassConfig{
		MasterKey: "local://" + filepath.Join(dir, "keys", "low-2.key"),
		PreviousMasterKeys: []string{"local://" + filepath.Join(dir, "keys", "low.key"),
			"aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
	}, kc.Classes["low"], "relative to the config file, not the working directory")
	assert.Equal(t, map[string]string{
		"local://keys/low-2.key": "local://" + filepath.Join(dir, "keys", "low-2.key"),
		"local://keys/low.key":   "local://" + filepath.Join(dir, "keys", "low.key"),
	}, cfg.LegacyURIs())
}

func TestBlindIndexConfig(t *testing.T) {
	load := func(t *testing.T, column string) (*Config, error) {
		t.Helper()
		dir := t.TempDir()
		body := "classes:\n  critical: {master_key: \"local://keys/critical.key\"}\ncolumns:\n  - " + column + "\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, "fieldcrypt.yaml"), []byte(body), 0o600))
		cfg, err := Load(dir, func(string) string { return "" }, Overrides{})
		require.NoError(t, err)
		return cfg, cfg.Validate(true)
	}
	t.Run("spec reaches the engine", func(t *testing.T) {
		cfg, err := load(t, "{table: patients, column: ssn, class: critical, row_bound: true, blind_index: ssn_bidx, blind_index_size: 20, blind_index_argon2: true}")
		require.NoError(t, err)
		rc := cfg.Columns[0].Reencrypt("")
		require.Len(t, rc.BlindIndexes, 1)
		assert.Equal(t, "ssn_bidx", rc.BlindIndexes[0].Column)
		assert.Equal(t, 20, rc.BlindIndexes[0].Spec.Size)
		require.NotNil(t, rc.BlindIndexes[0].Spec.Argon2)
		assert.Equal(t, uint32(2), rc.BlindIndexes[0].Spec.Argon2.Time)
		assert.Equal(t, 16, Column{BlindIndex: "x"}.BlindIndexSpec().Size, "default size")
		assert.Empty(t, Column{Column: "ssn"}.Reencrypt("").BlindIndexes)
	})
	for _, tc := range []struct{ name, column, want string }{
		{"not an identifier", "{table: p, column: ssn, class: critical, blind_index: \"ssn-bidx\"}", "blind_index \"ssn-bidx\": want a plain SQL identifier"},
		{"size", "{table: p, column: ssn, class: critical, blind_index: ssn_bidx, blind_index_size: 64}", "blind_index_size 64: want 4 to 32"},
		{"options without a column", "{table: p, column: ssn, class: critical, blind_index_size: 16}", "name its column in blind_index (gormcrypt's default is ssn_bidx)"},
		{"argon2 without a column", "{table: p, column: ssn, class: critical, blind_index_argon2: true}", "name its column in blind_index"},
		{"the value's column", "{table: p, column: ssn, class: critical, blind_index: SSN}", "is the value's own column"},
		{"deterministic", "{table: p, column: ssn, class: critical, mode: deterministic, blind_index: ssn_bidx}", "deterministic values are searchable already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.column)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "columns[0] (p.ssn)")
		})
	}
}

func TestSealSuite(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want envelope.Suite
	}{{"", 0}, {"kwp", envelope.SuiteRandomizedDerivedWrap}, {"SIV", envelope.SuiteRandomizedSIVWrap}, {"0x04", envelope.SuiteRandomizedSIVWrap}} {
		s, err := (&Config{SealSuite: tc.in}).Suite()
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, s, tc.in)
	}
	dir := t.TempDir()
	body := "seal_suite: gcm\nclasses:\n  critical: {master_key: \"local://keys/critical.key\"}\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fieldcrypt.yaml"), []byte(body), 0o600))
	cfg, err := Load(dir, func(string) string { return "" }, Overrides{})
	require.NoError(t, err)
	err = cfg.Validate(true)
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), `seal_suite "gcm": want kwp (suite 0x03, the default) or siv (suite 0x04)`)
}
