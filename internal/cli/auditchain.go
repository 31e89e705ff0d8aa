package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fieldcrypt/fieldcrypt/audit"
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
		errs = append(errs, fmt.Errorf("audit_chain: path and master_key are both required"))
	}
	for _, u := range append([]string{c.MasterKey}, c.PreviousMasterKeys...) {
		if u == "" {
			continue
		}
		if _, err := kms.Scheme(u); err != nil {
			errs = append(errs, fmt.Errorf("audit_chain: %w", err))
		}
	}
	return errs
}

func (c ColumnConfig) validateBlindIndex(where string) []error {
	var errs []error
	if c.BlindIndex != "" && !identRE.MatchString(c.BlindIndex) {
		errs = append(errs, fmt.Errorf("%s: blind_index %q: want a plain SQL identifier", where, c.BlindIndex))
	}
	if c.BlindIndexSize != 0 && (c.BlindIndexSize < 4 || c.BlindIndexSize > 32) {
		errs = append(errs, fmt.Errorf("%s: blind_index_size %d: want 4 to 32", where, c.BlindIndexSize))
	}
	return errs
}

// actorOf is who runs the command: --actor / actor: / FIELDCRYPT_ACTOR
// ("service:NAME" for a service), else the OS user, as a person.
func actorOf(cfg *Config) audit.Actor {
	if cfg != nil && cfg.Actor != "" {
		return audit.ParseActor(cfg.Actor)
	}
	return audit.Person(audit.DefaultActor())
}

// cliSink is the CLI's audit sink: it names the command's actor on every
// event that names none, masks passwords in error texts, and passes on the
// chained log's failures (Err) and flushes.
type cliSink struct {
	a     *app
	actor audit.Actor
	inner audit.Sink
	chain *audit.Chain // nil: none configured, or it could not be opened
	err   error        // the chained log could not be opened
}

func (s *cliSink) Record(ctx context.Context, e audit.Event) {
	e = audit.Attribute(ctx, e)
	if e.Actor == "" {
		e.Actor, e.ActorKind = s.actor.Name, s.actor.Kind
	}
	e.Error = s.a.redact(e.Error)
	s.inner.Record(ctx, e)
}

func (s *cliSink) Err() error {
	if s.err != nil {
		return s.err
	}
	return audit.SinkErr(s.inner)
}

func (s *cliSink) Flush() error {
	if s.err != nil {
		return s.err
	}
	return audit.FlushSink(s.inner)
}

// withChain adds the chained log, when configured, to the CLI's sinks.
func (a *app) withChain(cfg *Config, sinks []audit.Sink) *cliSink {
	s := &cliSink{a: a, actor: actorOf(cfg)}
	if cfg.AuditChain != nil {
		c, err := a.openChain(context.Background(), cfg)
		if err != nil {
			s.err = fmt.Errorf("audit chain %s: %w", cfg.AuditChain.Path, err)
			a.note("warning: cannot open the audit chain: %s (commands that must be recorded refuse)", a.redact(s.err.Error()))
		} else {
			sinks = append(sinks, c)
			s.chain = c
		}
	}
	s.inner = audit.Multi(sinks...)
	return s
}

// openChain opens the configured chained log (closed with the app).
func (a *app) openChain(ctx context.Context, cfg *Config) (*audit.Chain, error) {
	mk, err := a.opener().OpenMasterKey(ctx, resolveURI(cfg.BaseDir, cfg.AuditChain.MasterKey))
	if err != nil {
		return nil, err
	}
	cps, err := a.checkpointStore(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	c, err := audit.OpenChain(ctx, audit.ChainOptions{Path: resolvePath(cfg.BaseDir, cfg.AuditChain.Path), MasterKey: mk, Checkpoints: cps,
		OnError: func(err error) { a.note("warning: audit checkpoint: %s", a.redact(err.Error())) }})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() {
		if err := c.Close(); err != nil {
			a.note("warning: closing the audit chain: %s", a.redact(err.Error()))
		}
	})
	return c, nil
}

// checkpointStore opens where checkpoints go; create makes the database
// table if it does not exist (the writer), otherwise a missing table
// holds none.
func (a *app) checkpointStore(ctx context.Context, cfg *Config, create bool) (audit.CheckpointStore, error) {
	where := cfg.AuditChain.Checkpoints
	if where != "" && where != "database" {
		return audit.FileCheckpoints{Path: resolvePath(cfg.BaseDir, where)}, nil
	}
	db, err := a.openDB(ctx)
	if err != nil {
		return nil, err
	}
	if create {
		return audit.NewGormCheckpoints(ctx, db)
	}
	if !db.WithContext(ctx).Migrator().HasTable(audit.CheckpointTable) {
		return nil, nil
	}
	return audit.NewGormCheckpointsNoMigrate(db), nil
}

// resolveURI makes a relative local:// master key URI absolute (the
// chain's headers name the key by the URI it was opened with).
func resolveURI(base, uri string) string {
	if p, ok := strings.CutPrefix(uri, "local://"); ok && p != "" && !strings.HasPrefix(p, "/") {
		return "local://" + resolvePath(base, p)
	}
	return uri
}

// auditFiles returns the files a command reads: those given, else the
// configured chain's.
func (a *app) auditFiles(cfg *Config, args []string) ([]string, error) {
	if len(args) > 0 {
		out := make([]string, len(args))
		for i, f := range args {
			out[i] = resolvePath(a.io.Dir, f)
		}
		return out, nil
	}
	if cfg.AuditChain == nil {
		return nil, usageErrorf("no log files given and no audit_chain configured")
	}
	files, err := audit.Files(resolvePath(cfg.BaseDir, cfg.AuditChain.Path))
	if err == nil && len(files) == 0 {
		err = usageErrorf("no log files at %s", cfg.AuditChain.Path)
	}
	return files, err
}

// verifyOptions are the configured master keys and the stored
// checkpoints.
func (a *app) verifyOptions(ctx context.Context, cfg *Config) (audit.VerifyOptions, error) {
	if cfg.AuditChain == nil || cfg.AuditChain.MasterKey == "" {
		return audit.VerifyOptions{}, usageErrorf("audit_chain.master_key is not configured: verify needs the master key the log is protected by")
	}
	o := audit.VerifyOptions{Opener: a.opener()}
	for _, u := range append([]string{cfg.AuditChain.MasterKey}, cfg.AuditChain.PreviousMasterKeys...) {
		o.MasterKeys = append(o.MasterKeys, resolveURI(cfg.BaseDir, u))
	}
	cps, err := a.checkpointStore(ctx, cfg, false)
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

// parseWhen reads --since/--until: an RFC 3339 time, a date, or how long
// before now ("14d", "36h").
func (a *app) parseWhen(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			return a.now().AddDate(0, 0, -days), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return a.now().Add(-d), nil
	}
	return time.Time{}, usageErrorf("--%s %q: want an RFC 3339 time, a date (2026-11-02) or a duration before now (14d, 36h)", flag, s)
}

// createAuditKey creates the audit chain's local master key file when the
// configuration names one that does not exist (init, quickstart). It
// returns the file created, or "".
func createAuditKey(cfg *Config) (string, error) {
	if cfg.AuditChain == nil {
		return "", nil
	}
	p, ok := strings.CutPrefix(resolveURI(cfg.BaseDir, cfg.AuditChain.MasterKey), "local://")
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
		return "", err
	}
	return p, nil
}
