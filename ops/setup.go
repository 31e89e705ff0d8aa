package ops

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// starterHeader starts the configuration file Bootstrap writes.
const starterHeader = `# fieldcrypt configuration (docs/cli.md). Precedence: flags > FIELDCRYPT_* env > this file.
# Relative paths resolve against this file's directory.
# The local:// master keys below are for development: in production use
# aws-kms://arn:... or gcp-kms://projects/... and rotate with 'fieldcrypt keys rewrap'.
`

// Bootstrap creates a development project: in cfgPath's directory, a local
// master key per encrypted class under .fieldcrypt/ (mode 0600; existing
// ones are kept) and a starter configuration file at cfgPath naming them,
// database and an audit log. It returns the files it created. Local master
// keys are for development: use a KMS in production.
func Bootstrap(cfgPath, database string) ([]string, error) {
	dir := filepath.Dir(cfgPath)
	keyDir := filepath.Join(dir, ".fieldcrypt")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", keyDir, err)
	}
	cfg := &config.Config{
		Keyring:  config.DefaultKeyring,
		Database: database,
		AuditLog: filepath.Join(".fieldcrypt", "audit.jsonl"),
		Classes:  map[string]keyring.ClassConfig{},
	}
	var created []string
	for _, c := range envelope.Classes() {
		if !c.Encrypted() {
			continue
		}
		rel := filepath.Join(".fieldcrypt", "master-"+c.String()+".key")
		path := filepath.Join(dir, rel)
		if _, err := localkms.Create(path); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return created, err
			}
		} else {
			created = append(created, path)
		}
		cfg.Classes[c.String()] = keyring.ClassConfig{MasterKey: "local://" + rel}
	}
	if err := config.WriteFile(cfgPath, cfg, starterHeader); err != nil {
		return created, err
	}
	return append(created, cfgPath), nil
}

// CreateLocalKeys creates the local:// master key files cfg names that do
// not exist yet (mode 0600, in directories created 0700), and returns
// their paths.
func CreateLocalKeys(cfg *config.Config) ([]string, error) {
	var created []string
	for _, c := range cfg.EncryptedClasses() {
		path := cfg.LocalKeyPath(cfg.Classes[c.String()].MasterKey)
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return created, err
		}
		if _, err := localkms.Create(path); err != nil {
			return created, err
		}
		created = append(created, path)
	}
	// The audit chain's local master key, if the configuration names one.
	path, err := cfg.CreateAuditKey()
	if path != "" {
		created = append(created, path)
	}
	return created, err
}

// SetupResult is what Setup did.
type SetupResult struct {
	ConfigFile   string            `json:"config_file,omitempty"`
	CreatedFiles []string          `json:"created_files"`
	Database     string            `json:"database"`
	Keyring      string            `json:"keyring"`
	Created      []keyring.KEKInfo `json:"created"`
	Existing     []keyring.KEKInfo `json:"existing"`
	// SetupOptions.Tenants: how many tenant scopes were created and found.
	TenantsCreated  int `json:"tenants_created,omitempty"`
	TenantsExisting int `json:"tenants_existing,omitempty"`
}

// SetupOptions configure Setup.
type SetupOptions struct {
	// Tenants are provisioned in bulk (keyring.EnsureTenants): version 1 of
	// each tenant's scope in every tenant-scoped class, without a KMS call
	// per tenant.
	Tenants []string
}

// ReadTenants reads a tenants file: one tenant per line; blank lines and
// lines starting with '#' are skipped; surrounding spaces are trimmed.
func ReadTenants(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fielderr.Mark(fmt.Errorf("tenants file: %w", err), fielderr.InvalidInput)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fielderr.Mark(fmt.Errorf("tenants file %s lists no tenant", path), fielderr.InvalidInput)
	}
	return out, nil
}

// Setup prepares the database of an Operator opened with Migrate: the
// re-encryption job tables, version 1 of the KEK of every configured class
// and, with a configured tenant, of the tenant in tenant-scoped classes.
// It is idempotent: existing KEKs are left alone (and listed as such). The
// keyring records kek.created.
func (o *Operator) Setup(ctx context.Context, opts ...SetupOptions) (*SetupResult, error) {
	var so SetupOptions
	for _, x := range opts {
		so.Tenants = append(so.Tenants, x.Tenants...)
	}
	res := &SetupResult{CreatedFiles: []string{}, Created: []keyring.KEKInfo{}, Existing: []keyring.KEKInfo{},
		ConfigFile: o.Config.Path, Database: o.DSN.Redacted, Keyring: o.Config.Keyring}
	// The re-encryption job tables too, so that reencrypt runs no DDL on a
	// live database.
	if err := reencrypt.CreateTables(ctx, o.DB); err != nil {
		return nil, fmt.Errorf("create re-encryption job tables: %s", o.DSN.Redact(err.Error()))
	}
	before, err := o.Keyring.List(ctx)
	if err != nil {
		return nil, err
	}
	existed := map[envelope.KEKRef]bool{}
	for _, i := range before {
		existed[i.Ref] = true
	}
	infos, err := o.Keyring.Init(ctx)
	if err == nil && o.Config.Tenant != "" {
		for _, c := range o.Config.EncryptedClasses() {
			if !o.Config.Classes[c.String()].TenantScoped {
				continue
			}
			var info keyring.KEKInfo
			if info, err = o.Keyring.EnsureScope(ctx, envelope.Scope{Class: c, Tenant: o.Config.Tenant}); err != nil {
				break
			}
			infos = append(infos, info)
		}
	}
	if err == nil && len(so.Tenants) > 0 {
		var rep keyring.TenantsReport
		rep, err = o.Keyring.EnsureTenants(ctx, so.Tenants) // records kek.created per scope
		res.TenantsCreated, res.TenantsExisting = len(rep.Created), rep.Existing
	}
	for _, i := range infos {
		if existed[i.Ref] {
			res.Existing = append(res.Existing, i)
		} else {
			res.Created = append(res.Created, i)
		}
	}
	return res, err
}

// UpgradeResult is what Upgrade did in one class.
type UpgradeResult struct {
	Class           string   `json:"class"`
	ClassKeyCreated bool     `json:"class_key_created"`
	Sealed          []string `json:"sealed"` // scopes sealed now, as they were
	AlreadySealed   int      `json:"already_sealed"`
	Renamed         int      `json:"renamed"`            // records moved from a relative local:// URI to the absolute one
	MovedToClassKey int      `json:"moved_to_class_key"` // tenant KEK versions moved from the master key to the class key
}

// Upgrade seals a keyring written before keyrings were sealed (open the
// Operator with Migrate: it adds the columns sealing needs), after Confirm:
// the operator vouches for its state. Records under the relative local://
// URIs of an earlier setup move to the absolute path of the same file.
// The keyring records keyring.sealed per class.
func (o *Operator) Upgrade(ctx context.Context, confirm Confirm) ([]UpgradeResult, error) {
	if err := confirm.ask(ctx, Question{Action: "sealing the keyring", Prompt: "Seal the keyring as it is now? You vouch that nobody tampered with it.", Answer: "upgrade"}); err != nil {
		return nil, err
	}
	var opts []keyring.UpgradeOption
	for rel, abs := range o.Config.LegacyURIs() {
		opts = append(opts, keyring.WithMasterKeyAlias(rel, abs))
	}
	rep, err := o.Keyring.Upgrade(ctx, opts...)
	if err != nil {
		return nil, err
	}
	out := []UpgradeResult{}
	for _, cu := range rep.Classes {
		u := UpgradeResult{Class: cu.Class.String(), ClassKeyCreated: cu.ClassKeyCreated, Sealed: []string{}, AlreadySealed: cu.AlreadySealed, Renamed: cu.Renamed, MovedToClassKey: cu.MovedToClassKey}
		for _, s := range cu.Sealed {
			u.Sealed = append(u.Sealed, s.String())
		}
		out = append(out, u)
	}
	return out, nil
}
