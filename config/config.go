// Package config turns what an operator writes (a YAML file,
// FIELDCRYPT_* environment variables, command-line flags) into what the
// library takes: a keyring.Config, the encrypted columns as
// reencrypt.Columns, a database connection and a kms.Registry.
//
// The common case is one call:
//
//	cfg, err := config.Load(dir, os.Getenv, config.Overrides{})
//	kc, err := cfg.KeyringConfig()        // for keyring.New
//	db, err := config.OpenDB(ctx, cfg.DSN())
//	kr, err := keyring.New(kc, keyring.NewGormStoreNoMigrate(db), keyring.WithOpener(cfg.Registry()))
//
// Precedence is flags > environment > file > defaults. Relative paths
// (sqlite://, local:// master keys, the audit log) resolve against the
// configuration file's directory, so a configuration means the same files
// wherever a process runs. Errors name the offending entry and wrap
// ErrInvalid (kind fielderr.InvalidInput); none shows a password.
//
// Endpoints of KMS emulators come only from the kms: section of the file
// (never from the environment), and plaintext transport needs insecure:
// true there.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// ErrInvalid means the configuration (a file, a variable, a flag) is
// invalid; the message names the entry. Its kind is fielderr.InvalidInput.
var ErrInvalid = fielderr.New(fielderr.InvalidInput, "invalid configuration")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// DefaultFile is the configuration file looked up in the working
// directory when --config and FIELDCRYPT_CONFIG are not given.
const DefaultFile = "fieldcrypt.yaml"

// Defaults of settings that have one.
const (
	DefaultDatabase = "sqlite://fieldcrypt.db"
	DefaultKeyring  = "default"
)

// Config is the configuration after merging defaults, the config file,
// FIELDCRYPT_* environment variables and flags (in increasing precedence).
type Config struct {
	// Keyring is the keyring id (keyring.Config.Name), bound into every
	// wrapped KEK.
	Keyring string `yaml:"keyring,omitempty" json:"keyring"`
	// Database is the DSN: sqlite://PATH, postgres://..., mysql://...
	Database string `yaml:"database,omitempty" json:"database"`
	// Tenant is the tenant scope of operations that take one (rotate,
	// destroy, encrypt-existing of a column without tenant_column).
	Tenant string `yaml:"tenant,omitempty" json:"tenant,omitempty"`
	// AuditLog is a JSON-lines file audit events are appended to; "-" is
	// stderr; empty disables auditing.
	AuditLog string `yaml:"audit_log,omitempty" json:"audit_log,omitempty"`
	// Actor is recorded as who performed each audited operation.
	Actor string `yaml:"actor,omitempty" json:"actor,omitempty"`
	// AuditChain is the hash-chained audit log (auditchain.go).
	AuditChain *AuditChainConfig `yaml:"audit_chain,omitempty" json:"audit_chain,omitempty"`
	// CacheTTL and MaxAge tune the keyring cache (Go durations).
	CacheTTL string `yaml:"cache_ttl,omitempty" json:"cache_ttl,omitempty"`
	MaxAge   string `yaml:"max_age,omitempty" json:"max_age,omitempty"`
	// AllowUnsealedStore lets commands use a keyring written before
	// keyrings were sealed, during the migration ('keys upgrade').
	AllowUnsealedStore bool `yaml:"allow_unsealed_store,omitempty" json:"allow_unsealed_store,omitempty"`
	// SealSuite is the suite randomized values are sealed in by the
	// commands that seal (encrypt-existing, reencrypt --full): "kwp"
	// (suite 0x03, AES-KWP, NIST SP 800-38F; the default) or "siv" (suite
	// 0x04, AES-SIV, RFC 5297: cheaper per value, 8 bytes longer; see
	// docs/format.md). Every suite is read whatever this says. Give the
	// application the same choice (gormcrypt.WithSealSuite).
	SealSuite string `yaml:"seal_suite,omitempty" json:"seal_suite,omitempty"`
	// Classes maps a class name to its master key.
	Classes map[string]keyring.ClassConfig `yaml:"classes,omitempty" json:"classes"`
	// Columns lists the encrypted columns of the database.
	Columns []Column `yaml:"columns,omitempty" json:"columns"`
	// KMS configures the master-key backends (emulator endpoints).
	KMS KMS `yaml:"kms,omitempty" json:"kms,omitzero"`

	// Set by LoadConfig, not by the file.
	Path    string `yaml:"-" json:"config_file,omitempty"` // the file read, "" if none
	BaseDir string `yaml:"-" json:"-"`                     // relative paths resolve against it
}

// Suite is the envelope suite SealSuite names (0: the envelope's default).
func (c *Config) Suite() (envelope.Suite, error) {
	switch strings.ToLower(strings.TrimSpace(c.SealSuite)) {
	case "":
		return 0, nil
	case "kwp", "0x03":
		return envelope.SuiteRandomizedDerivedWrap, nil
	case "siv", "0x04":
		return envelope.SuiteRandomizedSIVWrap, nil
	}
	return 0, fmt.Errorf("seal_suite %q: want kwp (suite 0x03, the default) or siv (suite 0x04)", c.SealSuite)
}

// Column describes one encrypted column.
type Column struct {
	Table        string `yaml:"table" json:"table"`
	Column       string `yaml:"column" json:"column"`
	PK           string `yaml:"pk,omitempty" json:"pk"`                                 // default "id"; "a, b" for a composite key
	Class        string `yaml:"class" json:"class"`                                     // critical, high, moderate, low
	Mode         string `yaml:"mode,omitempty" json:"mode"`                             // randomized (default) or deterministic
	RowBound     bool   `yaml:"row_bound,omitempty" json:"row_bound"`                   // bind values to their row's pk
	Encoding     string `yaml:"encoding,omitempty" json:"encoding"`                     // text (default, "fc1:" base64) or binary
	TenantColumn string `yaml:"tenant_column,omitempty" json:"tenant_column,omitempty"` // column holding each row's tenant
	// BlindIndex names the column holding the value's blind index, as
	// gormcrypt's `blindindex` tag writes it (by default the column's
	// name + "_bidx"). encrypt-existing and reencrypt --full write it with
	// the value; census counts encrypted rows whose index is missing;
	// 'show --where' searches it. BlindIndexSize is its size in bytes
	// (blindindex=size:N, default 16); BlindIndexArgon2 says the index is
	// stretched with Argon2id (blindindex=argon2). Both must match the tag:
	// they enter the index's value.
	BlindIndex       string `yaml:"blind_index,omitempty" json:"blind_index,omitempty"`
	BlindIndexSize   int    `yaml:"blind_index_size,omitempty" json:"blind_index_size,omitempty"`
	BlindIndexArgon2 bool   `yaml:"blind_index_argon2,omitempty" json:"blind_index_argon2,omitempty"`
}

// BlindIndexSpec is the column's blind index configuration (the zero
// value when it has none).
func (c Column) BlindIndexSpec() envelope.BlindIndex {
	if c.BlindIndex == "" {
		return envelope.BlindIndex{}
	}
	bi := envelope.BlindIndex{Size: c.BlindIndexSize}
	if bi.Size == 0 {
		bi.Size = envelope.DefaultBlindIndexSize
	}
	if c.BlindIndexArgon2 {
		a := envelope.OWASPArgon2 // what gormcrypt's blindindex=argon2 uses
		bi.Argon2 = &a
	}
	return bi
}

// Name is "table.column".
func (c Column) Name() string { return c.Table + "." + c.Column }

// ClassValue returns the parsed class (the config is validated first).
func (c Column) ClassValue() envelope.Class {
	cl, _ := envelope.ParseClass(c.Class)
	return cl
}

// Deterministic reports whether the column uses deterministic encryption.
func (c Column) Deterministic() bool { return c.Mode == "deterministic" }

// Binary reports whether the column stores the binary form.
func (c Column) Binary() bool { return c.Encoding == "binary" }

// Reencrypt returns the column as the reencrypt engine takes it, with
// tenant as the fixed tenant of rows when the column has no
// tenant_column.
func (c Column) Reencrypt(tenant string) reencrypt.Column {
	return reencrypt.Column{
		Table: c.Table, PK: c.PK, Column: c.Column, Class: c.ClassValue(),
		Tenant: tenant, TenantColumn: c.TenantColumn,
		RowBound: c.RowBound, Deterministic: c.Deterministic(), Text: !c.Binary(),
		BlindIndexes: c.blindIndexes(),
	}
}

func (c Column) blindIndexes() []reencrypt.BlindIndex {
	if c.BlindIndex == "" {
		return nil
	}
	return []reencrypt.BlindIndex{{Column: c.BlindIndex, Spec: c.BlindIndexSpec()}}
}

// Overrides are the values given by flags; empty fields are unset.
type Overrides struct {
	ConfigPath string
	Database   string
	Keyring    string
	Tenant     string
	AuditLog   string
	Actor      string
	MasterKeys []string // "class=URI"
	// Set reports whether a flag was given explicitly (so that an empty
	// value, e.g. --audit-log "", can override the file).
	Set map[string]bool
}

// Env var names. FIELDCRYPT_MASTER_KEY_<CLASS> (e.g.
// FIELDCRYPT_MASTER_KEY_CRITICAL) sets a class's master key.
const (
	EnvConfig          = "FIELDCRYPT_CONFIG"
	EnvDatabase        = "FIELDCRYPT_DATABASE"
	EnvKeyring         = "FIELDCRYPT_KEYRING"
	EnvTenant          = "FIELDCRYPT_TENANT"
	EnvAuditLog        = "FIELDCRYPT_AUDIT_LOG"
	EnvActor           = "FIELDCRYPT_ACTOR"
	EnvOutput          = "FIELDCRYPT_OUTPUT"
	EnvMasterKeyPrefix = "FIELDCRYPT_MASTER_KEY_"
)

// Load builds the configuration: defaults < file < environment < flags.
// The file is o.ConfigPath, else $FIELDCRYPT_CONFIG, else
// dir/fieldcrypt.yaml if it exists. A file named explicitly must exist
// (else the error wraps fs.ErrNotExist too). Errors wrap ErrInvalid and
// name the offending entry.
func Load(dir string, getenv func(string) string, o Overrides) (*Config, error) {
	cfg := &Config{BaseDir: dir}
	path, explicit := o.ConfigPath, o.ConfigPath != ""
	if path == "" {
		if path = getenv(EnvConfig); path != "" {
			explicit = true
		}
	}
	if path == "" {
		path = DefaultFile
	}
	path = ResolvePath(dir, path)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := decodeConfig(data, cfg); err != nil {
			return nil, invalidf("config file %s: %w", path, err)
		}
		cfg.Path = path
		cfg.BaseDir = filepath.Dir(path)
	case errors.Is(err, os.ErrNotExist) && !explicit:
		// no file: defaults, environment and flags only
	default:
		return nil, invalidf("config file: %w", err)
	}

	// Environment.
	env := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	env(&cfg.Database, EnvDatabase)
	env(&cfg.Keyring, EnvKeyring)
	env(&cfg.Tenant, EnvTenant)
	env(&cfg.AuditLog, EnvAuditLog)
	env(&cfg.Actor, EnvActor)
	for _, c := range envelope.Classes() {
		if !c.Encrypted() {
			continue
		}
		if v := getenv(EnvMasterKeyPrefix + strings.ToUpper(c.String())); v != "" {
			cfg.setMasterKey(c.String(), v)
		}
	}

	// Flags.
	flag := func(dst *string, name, v string) {
		if v != "" || o.Set[name] {
			*dst = v
		}
	}
	flag(&cfg.Database, "database", o.Database)
	flag(&cfg.Keyring, "keyring", o.Keyring)
	flag(&cfg.Tenant, "tenant", o.Tenant)
	flag(&cfg.AuditLog, "audit-log", o.AuditLog)
	flag(&cfg.Actor, "actor", o.Actor)
	for _, kv := range o.MasterKeys {
		class, uri, ok := strings.Cut(kv, "=")
		if !ok || class == "" || uri == "" {
			return nil, invalidf("--master-key %q: want CLASS=URI, e.g. critical=aws-kms://arn:...", kv)
		}
		cfg.setMasterKey(strings.ToLower(class), uri)
	}

	// Defaults.
	if cfg.Database == "" {
		cfg.Database = DefaultDatabase
	}
	if cfg.Keyring == "" {
		cfg.Keyring = DefaultKeyring
	}
	for i := range cfg.Columns {
		c := &cfg.Columns[i]
		if c.PK == "" {
			c.PK = "id"
		}
		if c.Mode == "" {
			c.Mode = "randomized"
		}
		if c.Encoding == "" {
			c.Encoding = "text"
		}
	}
	return cfg, nil
}

func (c *Config) setMasterKey(class, uri string) {
	if c.Classes == nil {
		c.Classes = map[string]keyring.ClassConfig{}
	}
	cc := c.Classes[class]
	cc.MasterKey = uri
	c.Classes[class] = cc
}

func decodeConfig(data []byte, cfg *Config) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Validate checks everything that can be checked without a database or a
// KMS, and returns every problem, each naming its entry. needKeys says
// whether the command needs at least one encrypted class.
func (c *Config) Validate(needKeys bool) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := ParseDSN(c.Database, c.BaseDir); err != nil {
		bad("database: %v", err)
	}
	if c.CacheTTL != "" {
		if _, err := time.ParseDuration(c.CacheTTL); err != nil {
			bad("cache_ttl %q: not a duration (e.g. 15m)", c.CacheTTL)
		}
	}
	if c.MaxAge != "" {
		if _, err := time.ParseDuration(c.MaxAge); err != nil {
			bad("max_age %q: not a duration (e.g. 24h)", c.MaxAge)
		}
	}
	if _, err := c.Suite(); err != nil {
		errs = append(errs, err)
	}
	if e := c.KMS.AWS; e.Endpoint != "" {
		if err := (awskms.Opener{Endpoint: e.Endpoint, Insecure: e.Insecure}).CheckEndpoint(); err != nil {
			bad("kms.aws: %v", err)
		}
	}
	if e := c.KMS.GCP; e.Insecure && e.Endpoint == "" {
		bad("kms.gcp: insecure needs an emulator endpoint")
	}
	if needKeys || len(c.Classes) > 0 {
		if _, err := c.KeyringConfig(); err != nil {
			errs = append(errs, err)
		}
	}
	seen := map[string]int{}
	for i, col := range c.Columns {
		where := fmt.Sprintf("columns[%d] (%s)", i, col.Name())
		if !identRE.MatchString(col.Table) {
			bad("%s: table %q: want a plain SQL identifier", where, col.Table)
		}
		if !identRE.MatchString(col.Column) {
			bad("%s: column %q: want a plain SQL identifier", where, col.Column)
		}
		for _, k := range strings.Split(col.PK, ",") {
			if !identRE.MatchString(strings.TrimSpace(k)) {
				bad("%s: pk %q: want a plain SQL identifier, or several separated by commas (a composite key)", where, col.PK)
				break
			}
		}
		if col.TenantColumn != "" && !identRE.MatchString(col.TenantColumn) {
			bad("%s: tenant_column %q: want a plain SQL identifier", where, col.TenantColumn)
		}
		cl, err := envelope.ParseClass(col.Class)
		switch {
		case err != nil || col.Class != cl.String():
			bad("%s: class %q: want critical, high, moderate or low", where, col.Class)
		case !cl.Encrypted():
			bad("%s: class public is stored in clear: do not list it as encrypted", where)
		default:
			if _, ok := c.Classes[col.Class]; !ok {
				bad("%s: class %q has no master key configured (classes.%s.master_key)", where, col.Class, col.Class)
			}
		}
		switch col.Mode {
		case "randomized", "deterministic":
		default:
			bad("%s: mode %q: want randomized or deterministic", where, col.Mode)
		}
		if col.Mode == "deterministic" && col.RowBound {
			bad("%s: deterministic values cannot be row_bound (equal values must give equal ciphertexts)", where)
		}
		switch col.Encoding {
		case "text", "binary":
		default:
			bad("%s: encoding %q: want text or binary", where, col.Encoding)
		}
		errs = append(errs, col.validateBlindIndex(where)...)
		if j, dup := seen[col.Name()]; dup {
			bad("%s: listed twice (also columns[%d])", where, j)
		}
		seen[col.Name()] = i
	}
	errs = append(errs, c.AuditChain.validate()...)
	return joinUsage(errs)
}

func joinUsage(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n  %w", ErrInvalid, errorsJoinIndented(errs))
}

type joined []error

func (j joined) Error() string {
	s := make([]string, len(j))
	for i, e := range j {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n  ")
}
func (j joined) Unwrap() []error { return j }

func errorsJoinIndented(errs []error) error { return joined(errs) }

// KeyringConfig returns the keyring configuration, validated. Relative
// local:// master key paths are resolved against the config file's
// directory, so that what the keyring stores names the key file wherever
// a process runs.
func (c *Config) KeyringConfig() (keyring.Config, error) {
	kc := keyring.Config{Name: c.Keyring, Classes: map[string]keyring.ClassConfig{}, AllowUnsealedStore: c.AllowUnsealedStore}
	for n, cc := range c.Classes {
		prev := make([]string, 0, len(cc.PreviousMasterKeys))
		for _, u := range cc.PreviousMasterKeys {
			prev = append(prev, c.CanonicalURI(u))
		}
		kc.Classes[n] = keyring.ClassConfig{MasterKey: c.CanonicalURI(cc.MasterKey), PreviousMasterKeys: prev, TenantScoped: cc.TenantScoped}
	}
	if c.CacheTTL != "" {
		kc.CacheTTL, _ = time.ParseDuration(c.CacheTTL)
	}
	if c.MaxAge != "" {
		kc.MaxAge, _ = time.ParseDuration(c.MaxAge)
	}
	if err := kc.Validate(); err != nil {
		return kc, err
	}
	return kc, nil
}

// EncryptedClasses returns the configured classes that have keys, most
// sensitive first.
func (c *Config) EncryptedClasses() []envelope.Class {
	var out []envelope.Class
	for n := range c.Classes {
		if cl, err := envelope.ParseClass(n); err == nil && cl.Encrypted() {
			out = append(out, cl)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Column returns the configured column "table.column".
func (c *Config) Column(name string) (Column, error) {
	for _, col := range c.Columns {
		if col.Name() == name {
			return col, nil
		}
	}
	var names []string
	for _, col := range c.Columns {
		names = append(names, col.Name())
	}
	if len(names) == 0 {
		return Column{}, invalidf("column %q is not configured (the config has no columns: section)", name)
	}
	return Column{}, invalidf("column %q is not configured (configured: %s)", name, strings.Join(names, ", "))
}

// Redacted returns a copy safe to print: the DSN's password is masked.
func (c *Config) Redacted() *Config {
	out := *c
	out.Database = RedactDSN(c.Database)
	return &out
}

// CanonicalURI returns uri with a relative local:// path resolved against
// the config file's directory (local://keys/a.key → local:///etc/app/keys/a.key).
// Other URIs are returned as they are.
func (c *Config) CanonicalURI(uri string) string {
	if p, ok := strings.CutPrefix(uri, "local://"); ok && p != "" && !filepath.IsAbs(p) && c.BaseDir != "" {
		return "local://" + filepath.Join(c.BaseDir, p)
	}
	return uri
}

// LegacyURIs maps the relative local:// master key URIs the configuration
// spells to the absolute ones the keyring now uses: an earlier 'init'
// stored the relative form (keyring.WithMasterKeyAlias takes them).
func (c *Config) LegacyURIs() map[string]string {
	out := map[string]string{}
	for _, cc := range c.Classes {
		for _, u := range append([]string{cc.MasterKey}, cc.PreviousMasterKeys...) {
			if abs := c.CanonicalURI(u); abs != u {
				out[u] = abs
			}
		}
	}
	return out
}

// ResolvePath returns p resolved against base when it is relative.
func ResolvePath(base, p string) string {
	if p == "" || filepath.IsAbs(p) || base == "" {
		return p
	}
	return filepath.Join(base, p)
}

// WriteFile writes cfg as YAML to path with mode 0600, after header (YAML
// comments); it never overwrites an existing file.
func WriteFile(path string, cfg *Config, header string) error {
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("write config %s: %w", path, err)
	}
	return f.Close()
}
