package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/console"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// AuditChainConfig is the audit_chain section: the hash-chained, keyed
// audit log (audit.Chain) every command records into, and that 'audit
// verify', 'audit report' and 'audit review' read.
type AuditChainConfig struct {
	// Path is the log file; rotated files are Path.NNNN...
	Path string `yaml:"path" json:"path"`
	// MasterKey wraps the log's key (a KMS key of its own is best).
	MasterKey string `yaml:"master_key" json:"master_key"`
	// PreviousMasterKeys are master keys older logs may be under: verify
	// accepts them, the writer never uses them.
	PreviousMasterKeys []string `yaml:"previous_master_keys,omitempty" json:"previous_master_keys,omitempty"`
	// Checkpoints is where checkpoints go: "database" (the default: table
	// fieldcrypt_audit_checkpoints of the configured database) or a file.
	Checkpoints string `yaml:"checkpoints,omitempty" json:"checkpoints,omitempty"`
}

func (c *AuditChainConfig) validate() []error {
	if c == nil {
		return nil
	}
	var errs []error
	if c.Path == "" || c.MasterKey == "" {
		errs = append(errs, invalidf("audit_chain: path and master_key are both required"))
	}
	for _, u := range append([]string{c.MasterKey}, c.PreviousMasterKeys...) {
		if u == "" {
			continue
		}
		if _, err := kms.Scheme(u); err != nil {
			errs = append(errs, invalidf("audit_chain: %v", err))
		}
	}
	return errs
}

func (c Column) validateBlindIndex(where string) []error {
	var errs []error
	if c.BlindIndex != "" && !identRE.MatchString(c.BlindIndex) {
		errs = append(errs, invalidf("%s: blind_index %q: want a plain SQL identifier", where, c.BlindIndex))
	}
	if c.BlindIndexSize != 0 && (c.BlindIndexSize < 4 || c.BlindIndexSize > 32) {
		errs = append(errs, invalidf("%s: blind_index_size %d: want 4 to 32", where, c.BlindIndexSize))
	}
	switch {
	case c.BlindIndex == "" && (c.BlindIndexSize != 0 || c.BlindIndexArgon2):
		errs = append(errs, invalidf("%s: blind_index_size and blind_index_argon2 describe a blind index: name its column in blind_index (gormcrypt's default is %s_bidx)", where, c.Column))
	case c.BlindIndex != "" && strings.EqualFold(c.BlindIndex, c.Column):
		errs = append(errs, invalidf("%s: blind_index %q is the value's own column: name the index column (gormcrypt's default is %s_bidx)", where, c.BlindIndex, c.Column))
	case c.BlindIndex != "" && c.Mode == "deterministic":
		errs = append(errs, invalidf("%s: blind_index on a deterministic column: deterministic values are searchable already (gormcrypt refuses blindindex with deterministic)", where))
	}
	return errs
}

// ActorValue is who acts: actor: / --actor / FIELDCRYPT_ACTOR
// ("service:NAME" for a service), else the OS user, as a person.
func (c *Config) ActorValue() audit.Actor {
	if c != nil && c.Actor != "" {
		return audit.ParseActor(c.Actor)
	}
	return audit.Person(audit.DefaultActor())
}

// OpenAuditChain opens the configured chained log for writing, its master
// key through the configuration's registry, its checkpoints in db (or the
// configured file). onError receives checkpoint failures (never values).
func (c *Config) OpenAuditChain(ctx context.Context, db *gorm.DB, onError func(error)) (*audit.Chain, error) {
	if c.AuditChain == nil {
		return nil, invalidf("audit_chain is not configured")
	}
	mk, err := c.Registry().OpenMasterKey(ctx, c.CanonicalURI(c.AuditChain.MasterKey))
	if err != nil {
		return nil, err
	}
	cps, err := c.CheckpointStore(ctx, db, true)
	if err != nil {
		return nil, err
	}
	return audit.OpenChain(ctx, audit.ChainOptions{
		Path: ResolvePath(c.BaseDir, c.AuditChain.Path), MasterKey: mk, Checkpoints: cps, OnError: onError,
	})
}

// CheckpointStore opens where the chain's checkpoints go; create makes the
// database table if it does not exist (the writer), otherwise a missing
// table holds none (nil store).
func (c *Config) CheckpointStore(ctx context.Context, db *gorm.DB, create bool) (audit.CheckpointStore, error) {
	where := c.AuditChain.Checkpoints
	if where != "" && where != "database" {
		return audit.FileCheckpoints{Path: ResolvePath(c.BaseDir, where)}, nil
	}
	if db == nil {
		return nil, invalidf("audit_chain.checkpoints: the database is needed")
	}
	if create {
		return audit.NewGormCheckpoints(ctx, db)
	}
	if !db.WithContext(ctx).Migrator().HasTable(audit.CheckpointTable) {
		return nil, nil
	}
	return audit.NewGormCheckpointsNoMigrate(db), nil
}

// AuditFiles returns the log files to read: args (relative to dir), else
// the configured chain's files.
func (c *Config) AuditFiles(dir string, args []string) ([]string, error) {
	if len(args) > 0 {
		out := make([]string, len(args))
		for i, f := range args {
			out[i] = ResolvePath(dir, f)
		}
		return out, nil
	}
	if c.AuditChain == nil {
		return nil, invalidf("no log files given and no audit_chain configured")
	}
	files, err := audit.Files(ResolvePath(c.BaseDir, c.AuditChain.Path))
	if err == nil && len(files) == 0 {
		err = invalidf("no log files at %s", c.AuditChain.Path)
	}
	return files, err
}

// VerifyOptions are the configured master keys of the chain and the
// checkpoints stored in db.
func (c *Config) VerifyOptions(ctx context.Context, db *gorm.DB) (audit.VerifyOptions, error) {
	if c.AuditChain == nil || c.AuditChain.MasterKey == "" {
		return audit.VerifyOptions{}, invalidf("audit_chain.master_key is not configured: verify needs the master key the log is protected by")
	}
	o := audit.VerifyOptions{Opener: c.Registry()}
	for _, u := range append([]string{c.AuditChain.MasterKey}, c.AuditChain.PreviousMasterKeys...) {
		o.MasterKeys = append(o.MasterKeys, c.CanonicalURI(u))
	}
	cps, err := c.CheckpointStore(ctx, db, false)
	if err != nil {
		return o, err
	}
	if cps != nil {
		if o.Checkpoints, err = cps.Checkpoints(ctx); err != nil {
			return o, err
		}
	}
	return o, nil
}

// CreateAuditKey creates the chain's local master key file when the
// configuration names one that does not exist (init, quickstart). It
// returns the file created, or "".
func (c *Config) CreateAuditKey() (string, error) {
	if c.AuditChain == nil {
		return "", nil
	}
	p, ok := strings.CutPrefix(c.CanonicalURI(c.AuditChain.MasterKey), "local://")
	if !ok || p == "" {
		return "", nil
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	if _, err := localkms.Create(p); err != nil {
		return "", fmt.Errorf("create the audit chain's master key: %w", err)
	}
	return p, nil
}

// ConsoleColumns are the configured encrypted columns as the console
// (fieldcrypt show) needs them.
func (c *Config) ConsoleColumns() []console.Column {
	out := make([]console.Column, len(c.Columns))
	for i, col := range c.Columns {
		out[i] = console.Column{Table: col.Table, Column: col.Column, PK: col.PK, Class: col.ClassValue(), Deterministic: col.Deterministic(),
			BlindIndex: col.BlindIndex, BlindIndexSpec: col.BlindIndexSpec(), Tenant: c.Tenant, TenantColumn: col.TenantColumn, Binary: col.Binary()}
	}
	return out
}

// IsEncrypted reports whether table.column is a configured encrypted
// column.
func (c *Config) IsEncrypted(table, column string) bool {
	for _, col := range c.Columns {
		if strings.EqualFold(col.Table, table) && strings.EqualFold(col.Column, column) {
			return true
		}
	}
	return false
}
