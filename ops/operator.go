// Package ops is the Go API of every operator workflow the fieldcrypt
// command runs: setting a project up, the census of encrypted columns,
// guarded destroys and search-key rotations, tenant shreds with their
// report, master key rotation with the configuration update, and
// multi-column re-encryption with its failure policy. The command parses
// flags, calls these and prints what they return; a Go program can do
// exactly the same.
//
// The common case opens an Operator on a configuration and calls it:
//
//	cfg, _ := config.Load(dir, os.Getenv, config.Overrides{})
//	op, err := ops.Open(ctx, cfg, ops.Options{Audit: sink})
//	defer op.Close()
//	res, err := op.Census(ctx, ops.CensusOptions{Verify: true})
//
// Why a package of its own: each workflow combines the keyring, the
// reencrypt engine and the configuration, and holds a precondition that
// must not depend on which front end runs it (a destroy refuses while a
// census finds data under the version, a shred refuses an unknown tenant
// before destroying anything). Every operation records its own audit
// events; results carry JSON tags, so a front end prints them as they are.
package ops

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/internal/hooks"
	"github.com/fieldcrypt/fieldcrypt/keyring"
)

// ErrRefused means an operation was refused: a precondition does not hold
// or it was not confirmed. It is keyring.ErrRefused (kind
// fielderr.Refused).
var ErrRefused = keyring.ErrRefused

// ErrNotSetUp means the database has no keyring tables, or tables that
// predate sealed keyrings: run Setup (fieldcrypt init) or Upgrade (keys
// upgrade) first. Its kind is fielderr.InvalidInput.
var ErrNotSetUp = fielderr.New(fielderr.InvalidInput, "keyring tables missing or out of date")

// Operator runs operator workflows on one configuration: its database, its
// keyring and its encrypted columns. Open one with Open; Close it.
type Operator struct {
	Config  *config.Config
	DSN     config.DSN
	DB      *gorm.DB
	Keyring *keyring.Keyring
	// Audit receives the events of every operation (never nil).
	Audit audit.Sink
	// Now is the clock decisions are made with (when a demoted version may
	// be destroyed); time.Now by default.
	Now func() time.Time
	// MeterProvider, TracerProvider and TenantLabels are Options' (nil:
	// the global providers).
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	TenantLabels   bool

	closers []func()
}

// Options configure Open.
type Options struct {
	// Migrate creates or updates the keyring tables (Setup and Upgrade
	// do; other workflows never change a production schema).
	Migrate bool
	// Audit receives the events (nil: audit.Discard).
	Audit audit.Sink
	// Now replaces time.Now for the keyring's decisions (nil: time.Now).
	Now func() time.Time
	// KeyringOptions are passed to keyring.New after the operator's own.
	KeyringOptions []keyring.Option
	// MeterProvider and TracerProvider receive the metrics and traces of
	// the keyring and of every operation (docs/operations.md, "Metrics
	// and traces"): a MetricsServer's provider, for example. nil means
	// the global providers (otel.GetMeterProvider, which do nothing unless
	// the application installs one).
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// TenantLabels adds the tenant to the keyring's and the envelope's
	// metrics (keyring.WithTenantLabels, envelope.WithTenantLabels). Off
	// by default: tenant names may be sensitive, and each is a series.
	TenantLabels bool
}

// Open connects to the configured database and opens its keyring. Without
// Migrate it refuses (ErrNotSetUp) a database whose keyring tables are
// missing or predate sealed keyrings, naming the command that fixes it.
func Open(ctx context.Context, cfg *config.Config, opts Options) (*Operator, error) {
	if err := cfg.Validate(true); err != nil {
		return nil, err
	}
	kc, err := cfg.KeyringConfig()
	if err != nil {
		return nil, err
	}
	o := &Operator{Config: cfg, Audit: opts.Audit, Now: opts.Now, MeterProvider: opts.MeterProvider, TracerProvider: opts.TracerProvider, TenantLabels: opts.TenantLabels}
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DSN, err = cfg.DSN(); err != nil {
		return nil, err
	}
	if opts.Migrate && o.DSN.Dialect == "sqlite" {
		// A new SQLite database holds wrapped keys: only its owner reads it.
		if f, err := os.OpenFile(o.DSN.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			f.Close()
		}
	}
	if o.DB, err = config.OpenDB(ctx, o.DSN); err != nil {
		return nil, err
	}
	o.closers = append(o.closers, func() { config.CloseDB(o.DB) })
	var store *keyring.GormStore
	if opts.Migrate {
		if store, err = keyring.NewGormStore(ctx, o.DB); err != nil {
			o.Close()
			return nil, fmt.Errorf("create keyring tables in %s: %w", o.DSN.Redacted, err)
		}
	} else {
		m := o.DB.WithContext(ctx).Migrator()
		switch {
		case !m.HasTable(keyring.KEKTable):
			o.Close()
			return nil, fmt.Errorf("%w: database %s has no keyring tables (%s): run 'fieldcrypt init' first", ErrNotSetUp, o.DSN.Redacted, keyring.KEKTable)
		case !m.HasColumn(keyring.ScopeTable, "epoch") || !m.HasColumn(keyring.KEKTable, "wrapped_by"):
			o.Close()
			return nil, fmt.Errorf("%w: the keyring tables in %s lack columns this version needs (they predate sealed keyrings or class-key wrapping): run 'fieldcrypt keys upgrade' (it adds them, then seals the keyring)", ErrNotSetUp, o.DSN.Redacted)
		}
		store = keyring.NewGormStoreNoMigrate(o.DB)
	}
	kopts := []keyring.Option{keyring.WithOpener(cfg.Registry()), keyring.WithAudit(o.Audit)}
	if opts.Now != nil { // tests: the keyring decides on the caller's clock
		kopts = append(kopts, hooks.KeyringClock(opts.Now).(keyring.Option))
	}
	if opts.MeterProvider != nil {
		kopts = append(kopts, keyring.WithMeterProvider(opts.MeterProvider))
	}
	if opts.TracerProvider != nil {
		kopts = append(kopts, keyring.WithTracerProvider(opts.TracerProvider))
	}
	if opts.TenantLabels {
		kopts = append(kopts, keyring.WithTenantLabels())
	}
	kopts = append(kopts, opts.KeyringOptions...)
	if o.Keyring, err = keyring.New(kc, store, kopts...); err != nil {
		o.Close()
		return nil, err
	}
	o.closers = append(o.closers, func() { _ = o.Keyring.Close() })
	return o, nil
}

// Close closes the keyring and the database connection.
func (o *Operator) Close() error {
	for i := len(o.closers) - 1; i >= 0; i-- {
		o.closers[i]()
	}
	o.closers = nil
	return nil
}

// record sends an event; err, if any, sets the outcome and message.
func (o *Operator) record(ctx context.Context, e audit.Event, err error) {
	if err != nil {
		e.Outcome, e.Error = audit.Error, o.DSN.Redact(err.Error())
	}
	o.Audit.Record(context.WithoutCancel(ctx), e)
}

// Question is what an operation asks to be confirmed.
type Question struct {
	Action string // what will be done: "destroying KEK critical/v2"
	Prompt string // the question for a person, with its consequences
	Answer string // what they must type to confirm
}

// Confirm asks whoever runs an operation to confirm it. It returns nil to
// go on, an error (of kind fielderr.Refused, or ctx's) to stop. A nil
// Confirm refuses.
type Confirm func(ctx context.Context, q Question) error

// ErrNotConfirmed is wrapped by the refusal of an operation that needed a
// confirmation and got none (a nil Confirm). Its kind is Refused.
var ErrNotConfirmed = fielderr.New(fielderr.Refused, "needs confirmation")

func (c Confirm) ask(ctx context.Context, q Question) error {
	if c == nil {
		return fielderr.Errorf(ErrRefused, "%s: %w", q.Action, ErrNotConfirmed)
	}
	return c(ctx, q)
}

// Scope returns the scope of class for the configured tenant: the tenant
// only when the class is tenant-scoped.
func (o *Operator) Scope(class envelope.Class) envelope.Scope {
	s := envelope.Scope{Class: class}
	if o.Config.Classes[class.String()].TenantScoped {
		s.Tenant = o.Config.Tenant
	}
	return s
}

// InUseUntil says until when a running process may still seal under ref
// (RFC 3339, UTC), or "" when none may.
func (o *Operator) InUseUntil(ctx context.Context, ref envelope.KEKRef) string {
	infos, err := o.Keyring.List(ctx)
	if err != nil {
		return "an unknown time (" + err.Error() + ")"
	}
	for _, i := range infos {
		if until := i.InUseUntil(); i.Ref == ref && until.After(o.Now()) {
			return until.UTC().Format(time.RFC3339)
		}
	}
	return ""
}

// Envelope returns an envelope over the operator's keyring that counts its
// seals and opens with the operator's MeterProvider.
func (o *Operator) Envelope() *envelope.Envelope {
	var eopts []envelope.Option
	if o.MeterProvider != nil {
		eopts = append(eopts, envelope.WithMeterProvider(o.MeterProvider))
	}
	if o.TenantLabels {
		eopts = append(eopts, envelope.WithTenantLabels())
	}
	if s, err := o.Config.Suite(); err == nil && s != 0 { // validated by Open
		eopts = append(eopts, envelope.WithSealSuite(s))
	}
	return envelope.New(o.Keyring, eopts...)
}
