package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// kekJSON is the JSON shape of one KEK version (never key material).
type kekJSON struct {
	Class        string     `json:"class"`
	Tenant       string     `json:"tenant,omitempty"`
	Version      uint32     `json:"version"`
	State        string     `json:"state"`
	Primary      bool       `json:"primary"`
	SearchRank   int        `json:"search_rank,omitempty"`
	WrappedBy    string     `json:"wrapped_by"`     // master-key | class-key
	MasterKeyURI string     `json:"master_key_uri"` // "" when wrapped by the class key
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	DemotedAt    *time.Time `json:"demoted_at,omitempty"`   // when it stopped being the primary
	InUseUntil   *time.Time `json:"in_use_until,omitempty"` // until then retire/destroy refuse (exit 5) without --force
	DestroyedAt  *time.Time `json:"destroyed_at,omitempty"`
}

func kekOf(i keyring.KEKInfo) kekJSON {
	k := kekJSON{
		Class: i.Ref.Class.String(), Tenant: i.Ref.Tenant, Version: i.Ref.Version, State: string(i.State),
		Primary: i.Primary, SearchRank: i.SearchRank, WrappedBy: i.WrappedBy.String(), MasterKeyURI: i.MasterKeyURI,
		CreatedAt: i.CreatedAt.UTC(), UpdatedAt: i.UpdatedAt.UTC(),
	}
	k.DemotedAt, k.InUseUntil, k.DestroyedAt = utcOrNil(i.DemotedAt), utcOrNil(i.InUseUntil()), utcOrNil(i.DestroyedAt)
	return k
}

func utcOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// starterHeader starts the config file init writes.
const starterHeader = `# fieldcrypt configuration (docs/cli.md). Precedence: flags > FIELDCRYPT_* env > this file.
# Relative paths resolve against this file's directory.
# The local:// master keys below are for development: in production use
# aws-kms://arn:... or gcp-kms://projects/... and rotate with 'fieldcrypt keys rewrap'.
`

// bootstrap creates, in dir, a local master key per encrypted class under
// .fieldcrypt/, and a starter config file at cfgPath naming them and a
// SQLite database. It returns the files it created.
func bootstrap(dir, cfgPath, database string) ([]string, error) {
	keyDir := filepath.Join(dir, ".fieldcrypt")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", keyDir, err)
	}
	cfg := &Config{
		Keyring:  DefaultKeyring,
		Database: database,
		AuditLog: filepath.Join(".fieldcrypt", "audit.jsonl"),
		Classes:  map[string]ClassConfig{},
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
		cfg.Classes[c.String()] = ClassConfig{MasterKey: "local://" + rel}
	}
	if err := WriteConfigFile(cfgPath, cfg, starterHeader); err != nil {
		return created, err
	}
	return append(created, cfgPath), nil
}

type initResult struct {
	ConfigFile   string    `json:"config_file,omitempty"`
	CreatedFiles []string  `json:"created_files"`
	Database     string    `json:"database"`
	Keyring      string    `json:"keyring"`
	Created      []kekJSON `json:"created"`
	Existing     []kekJSON `json:"existing"`
	// --tenants-file: how many tenant scopes were created and found.
	TenantsCreated  int `json:"tenants_created,omitempty"`
	TenantsExisting int `json:"tenants_existing,omitempty"`
}

// readTenants reads a --tenants-file: one tenant per line; blank lines and
// lines starting with '#' are skipped; surrounding spaces are trimmed.
func readTenants(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("--tenants-file: %v", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, usageErrorf("--tenants-file %s lists no tenant", path)
	}
	return out, nil
}

func (a *app) initCmd() *cobra.Command {
	var noBootstrap bool
	var tenantsFile string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the keyring tables and a first KEK per configured class",
		Long: `init creates the keyring tables (fieldcrypt_keks, fieldcrypt_kek_scopes) and the
re-encryption job tables in the database, and version 1 of the KEK of every
configured class. It is idempotent: existing KEKs are left alone.

With no configuration at all (no config file, no master keys in the
environment or flags) it sets up a development project in the working
directory: local master key files (mode 0600) in .fieldcrypt/, a SQLite
database fieldcrypt.db and a starter fieldcrypt.yaml, and says so.
Local master keys are for development; use a KMS in production.

With --tenant T it also creates the KEKs of tenant T in tenant-scoped classes.
With --tenants-file FILE (one tenant per line) it creates those of every
tenant listed, in bulk: tenant KEKs are wrapped by the class key, so this
makes no KMS call per tenant, and the scopes are written a few hundred per
transaction. Creating a tenant's KEKs on its first use needs no init at all.`,
		Example: `  # Development setup in the current directory
  fieldcrypt init

  # Provision the tenants of an import ahead of their traffic
  fieldcrypt init --tenants-file tenants.txt

  # Production: master keys in AWS KMS, keyring in PostgreSQL
  FIELDCRYPT_DATABASE='postgres://app@db:5432/app?sslmode=require' \
    fieldcrypt init --master-key critical=aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			res := initResult{CreatedFiles: []string{}, Created: []kekJSON{}, Existing: []kekJSON{}}
			cfg, err := LoadConfig(a.io.Dir, a.io.Getenv, a.overrides())
			if err != nil && !noBootstrap {
				// An explicit --config that does not exist yet is where the
				// starter config goes.
				target := a.configPath
				if target == "" {
					target = a.io.Getenv(EnvConfig)
				}
				if target == "" || !errors.Is(err, fs.ErrNotExist) {
					return err
				}
				cfg, err = &Config{}, nil
			}
			if err != nil {
				return err
			}
			if cfg.Path == "" && len(cfg.Classes) == 0 && !noBootstrap {
				target := a.configPath
				if target == "" {
					target = a.io.Getenv(EnvConfig)
				}
				if target == "" {
					target = DefaultConfigFile
				}
				target = resolvePath(a.io.Dir, target)
				db := a.database
				if db == "" {
					db = a.io.Getenv(EnvDatabase)
				}
				if db == "" {
					db = DefaultDatabase
				}
				files, err := bootstrap(filepath.Dir(target), target, db)
				res.CreatedFiles = append(res.CreatedFiles, files...)
				if err != nil {
					return err
				}
				a.configPath = target
				a.note("No configuration found: created a development setup.")
				for _, f := range files {
					a.note("  created %s", f)
				}
				a.note("Local master keys are for development only: keep .fieldcrypt/ out of version control and backups of the database.")
			}
			a.cfg = nil
			cfg, err = a.config(true)
			if err != nil {
				return err
			}
			// Create missing local master key files the config names.
			for _, c := range cfg.EncryptedClasses() {
				path := a.localKeyPath(cfg.Classes[c.String()].MasterKey)
				if path == "" {
					continue
				}
				if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
					if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
						return err
					}
					if _, err := localkms.Create(path); err != nil {
						return err
					}
					res.CreatedFiles = append(res.CreatedFiles, path)
					a.note("created local master key %s (class %s)", path, c)
				}
			}
			kr, err := a.keyring(ctx, true)
			if err != nil {
				return err
			}
			// The re-encryption job tables too, so that reencrypt runs no DDL
			// on a live database.
			if err := reencrypt.EnsureSchema(ctx, a.db); err != nil {
				return fmt.Errorf("create re-encryption job tables: %s", a.redact(err.Error()))
			}
			before, err := kr.List(ctx)
			if err != nil {
				return err
			}
			existed := map[envelope.KEKRef]bool{}
			for _, i := range before {
				existed[i.Ref] = true
			}
			infos, err := kr.Init(ctx)
			if err == nil && cfg.Tenant != "" {
				for _, c := range cfg.EncryptedClasses() {
					if !cfg.Classes[c.String()].TenantScoped {
						continue
					}
					var info keyring.KEKInfo
					if info, err = kr.EnsureScope(ctx, envelope.Scope{Class: c, Tenant: cfg.Tenant}); err != nil {
						break
					}
					infos = append(infos, info)
				}
			}
			if err == nil && tenantsFile != "" {
				var tenants []string
				if tenants, err = readTenants(resolvePath(a.io.Dir, tenantsFile)); err == nil {
					var rep keyring.TenantsReport
					rep, err = kr.EnsureTenants(ctx, tenants) // records kek.created per scope
					res.TenantsCreated, res.TenantsExisting = len(rep.Created), rep.Existing
				}
			}
			for _, i := range infos {
				if existed[i.Ref] {
					res.Existing = append(res.Existing, kekOf(i))
					continue
				}
				res.Created = append(res.Created, kekOf(i)) // the keyring records kek.created
			}
			if err != nil {
				return err
			}
			res.ConfigFile, res.Database, res.Keyring = cfg.Path, a.dsn.Redacted, cfg.Keyring
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "Keyring %q in %s\n", res.Keyring, res.Database)
				for _, k := range res.Created {
					fmt.Fprintf(w, "  created  %s v%d under %s\n", scopeName(k.Class, k.Tenant), k.Version, k.MasterKeyURI)
				}
				for _, k := range res.Existing {
					fmt.Fprintf(w, "  exists   %s v%d (primary)\n", scopeName(k.Class, k.Tenant), k.Version)
				}
				if tenantsFile != "" {
					fmt.Fprintf(w, "  tenants: %d scopes created, %d existed\n", res.TenantsCreated, res.TenantsExisting)
				}
				if res.ConfigFile != "" {
					fmt.Fprintf(w, "Config: %s\n", res.ConfigFile)
				}
				fmt.Fprintln(w, "Next: list your encrypted columns under 'columns:' in the config, then run 'fieldcrypt keys census'.")
			})
		},
	}
	cmd.Flags().BoolVar(&noBootstrap, "no-bootstrap", false, "never create local key files or a starter config")
	cmd.Flags().StringVar(&tenantsFile, "tenants-file", "", "also create the KEKs of every tenant listed in FILE (one per line), in bulk")
	return cmd
}

func scopeName(class, tenant string) string {
	if tenant == "" {
		return class
	}
	return class + "/tenant=" + tenant
}

func (a *app) overrides() Overrides {
	return Overrides{
		ConfigPath: a.configPath, Database: a.database, Keyring: a.keyringID, Tenant: a.tenant,
		AuditLog: a.auditLog, Actor: a.actor, MasterKeys: a.masterKeys, Set: a.setFlags,
	}
}
