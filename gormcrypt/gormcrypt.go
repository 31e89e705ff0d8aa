package gormcrypt

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// Sentinel errors. Every error gormcrypt returns wraps one of them (and,
// where a key or a ciphertext was involved, the envelope sentinel too, so
// errors.Is(err, envelope.ErrAuthentication) works). No error ever contains
// a plaintext or key material.
var (
	// ErrDecrypt means a stored value could not be decrypted: it failed
	// authentication (tampered, or copied from another row, column, class or
	// tenant), its key is unknown or destroyed, or it is malformed.
	ErrDecrypt = fielderr.New(fielderr.Unknown, "gormcrypt: cannot decrypt value")
	// ErrEncrypt means a value could not be encrypted (key unavailable,
	// unsupported Go type, SQL expression given for an encrypted column).
	ErrEncrypt = fielderr.New(fielderr.Unknown, "gormcrypt: cannot encrypt value")
	// ErrNotCiphertext means an encrypted column holds a value without the
	// "fc1:" prefix and the field does not opt in to migration. It is
	// reported together with ErrDecrypt.
	ErrNotCiphertext = fielderr.New(fielderr.Malformed, "gormcrypt: plaintext found in an encrypted column")
	// ErrUnsupportedPath means the statement would move an encrypted column
	// through a path gormcrypt cannot protect (a plaintext in raw SQL, a
	// ciphertext scanned into a map without a model, Pluck, ...). The
	// statement is not executed (for reads: the result is not returned).
	ErrUnsupportedPath = fielderr.New(fielderr.Unsupported, "gormcrypt: unsupported path for an encrypted column")
	// ErrNotSearchable means an equality condition names a randomized
	// encrypted column: add `deterministic` or `blindindex` to its tag.
	ErrNotSearchable = fielderr.New(fielderr.InvalidInput, "gormcrypt: column is not searchable")
	// ErrTag means a fieldcrypt struct tag is invalid.
	ErrTag = fielderr.New(fielderr.InvalidInput, "gormcrypt: invalid fieldcrypt tag")
)

// Error describes a failure on one value: which model, field, column and
// primary key, never the value itself. It unwraps to a gormcrypt sentinel
// and to the underlying envelope error, if any.
type Error struct {
	Op     string // "encrypt", "decrypt", "search", "query"
	Model  string // Go type name, e.g. "Patient"
	Field  string // Go field name, e.g. "SSN"
	Table  string
	Column string
	Row    string // primary key, "" when unknown or not row-bound
	Kind   error  // one of the sentinels above
	Err    error  // the cause (often an *envelope.Error); may be nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("gormcrypt: ")
	b.WriteString(e.Op)
	if e.Model != "" {
		b.WriteString(" " + e.Model + "." + e.Field)
	}
	if e.Table != "" {
		b.WriteString(" (column " + e.Table + "." + e.Column)
		if e.Row != "" {
			b.WriteString(", primary key " + e.Row)
		}
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(strings.TrimPrefix(e.Kind.Error(), "gormcrypt: "))
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(strings.TrimPrefix(e.Err.Error(), "fieldcrypt: "), "audit: "))
	}
	return b.String()
}

// Unwrap returns the sentinel and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

type tenantKey struct{}

// WithTenant returns a context whose statements seal and open values in the
// tenant's key scope (envelope.Binding.Tenant). Pass it with
// db.WithContext(ctx). A value sealed for one tenant does not open for
// another; without WithTenant the tenant is "" (one key scope per class).
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

func tenantOf(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	t, _ := ctx.Value(tenantKey{}).(string)
	return t
}

// Plugin is the GORM plugin. Create it with New and register it with
// db.Use. One Plugin serves one *gorm.DB (and its sessions).
type Plugin struct {
	env   *envelope.Envelope
	keys  envelope.KeySource
	audit audit.Sink // nil: no audit events
	// policies is the access policy per class (audit.go), set by
	// WithAccessPolicy or, at Initialize, to the defaults.
	policies    [8]audit.Policy
	policiesSet bool
	policyErr   error
	mu          sync.Mutex
	plans       sync.Map // *schema.Schema -> *plan
	// reg is every table of a prepared model with encrypted columns.
	reg registry
	// analyses caches the statement guard's analysis per SQL text.
	analyses      sync.Map // analysisKey -> *cachedAnalysis
	analysisCount atomic.Int64
	// fake serves decrypted result rows (rows.go).
	fake *sql.DB
	// envOpts configure the envelope (WithMeterProvider, WithTenantLabels).
	envOpts []envelope.Option
}

// WithMeterProvider makes the plugin count the seals and opens of its
// envelope (fieldcrypt.seal, fieldcrypt.open; docs/operations.md, "Metrics
// and traces") with mp instead of the global provider
// (otel.GetMeterProvider, which does nothing unless the application
// installs one). The keyring's metrics are the keyring's options
// (keyring.WithMeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(p *Plugin) { p.envOpts = append(p.envOpts, envelope.WithMeterProvider(mp)) }
}

// WithSealSuite makes the plugin seal randomized values in suite s
// (envelope.WithSealSuite): envelope.SuiteRandomizedSIVWrap (0x04, AES-SIV
// wrap: cheaper per value, 8 bytes longer) instead of the default 0x03
// (AES-KWP). Values of every suite are read whatever this says, so it can
// change on a running system; give the CLI the same choice (seal_suite in
// its configuration) so that reencrypt --full writes the same suite.
func WithSealSuite(s envelope.Suite) Option {
	return func(p *Plugin) { p.envOpts = append(p.envOpts, envelope.WithSealSuite(s)) }
}

// WithTenantLabels adds the tenant to the seal and open counters (off by
// default: each tenant is a new series, and tenant names may be
// sensitive). Values and row keys are never labels.
func WithTenantLabels() Option {
	return func(p *Plugin) { p.envOpts = append(p.envOpts, envelope.WithTenantLabels()) }
}

// ErrNoKeySource is returned by db.Use(gormcrypt.New(keys)) when keys is
// nil (or a nil pointer, such as the *keyring.Keyring of an ignored
// error): the plugin refuses to start rather than fail on the first write.
var ErrNoKeySource = fielderr.New(fielderr.InvalidInput, "gormcrypt: no key source (gormcrypt.New was given a nil key source)")

// Option configures the plugin.
type Option func(*Plugin)

// New returns the plugin, taking keys from keys (a *keyring.Keyring in an
// application, envelopetest.New() in tests). Register it with db.Use,
// which fails with ErrNoKeySource when keys is nil.
func New(keys envelope.KeySource, opts ...Option) *Plugin {
	p := &Plugin{keys: keys, fake: sql.OpenDB(fakeConnector{})}
	for _, o := range opts {
		o(p)
	}
	p.env = envelope.New(keys, p.envOpts...)
	return p
}

// Name implements gorm.Plugin.
func (p *Plugin) Name() string { return "fieldcrypt:gormcrypt" }

// Initialize implements gorm.Plugin: it checks the key source and
// registers the callbacks.
//
// Each GORM processor gets three kinds of callback: gormcrypt's own
// rewriting before GORM builds the statement (encrypt values, rewrite
// conditions), the guard pool around the one callback that executes the
// SQL (pool.go), and the read path after it.
func (p *Plugin) Initialize(db *gorm.DB) error {
	if p == nil || isNilKeySource(p.keys) {
		return ErrNoKeySource
	}
	if p.fake == nil {
		p.fake = sql.OpenDB(fakeConnector{})
	}
	if p.policyErr != nil {
		return p.policyErr
	}
	if !p.policiesSet {
		p.setPolicies(nil)
	}
	cb := db.Callback()
	guard := func(decrypt func(*gorm.DB) bool) func(*gorm.DB) {
		return func(db *gorm.DB) {
			if db.Error == nil {
				p.install(db, decrypt(db), false)
			}
		}
	}
	never := func(*gorm.DB) bool { return false }
	guardRows := func(db *gorm.DB) {
		if db.Error != nil {
			return
		}
		// Internal reads of stored ciphertexts (RebuildBlindIndexes) are
		// trusted: guarded, not decrypted.
		ctx := db.Statement.Context
		trusted := ctx != nil && ctx.Value(trustedKey{}) != nil
		p.install(db, !trusted, !trusted)
	}
	regs := []error{
		cb.Create().Before("gorm:create").Register("gormcrypt:create", p.beforeCreate),
		cb.Create().Before("gorm:create").After("gormcrypt:create").Register("gormcrypt:guard_create", guard(never)),
		cb.Create().After("gorm:create").Before("gorm:save_after_associations").Register("gormcrypt:unguard_create", p.uninstall),
		cb.Create().After("gormcrypt:unguard_create").Before("gorm:commit_or_rollback_transaction").Register("gormcrypt:after_create", p.afterCreate),
		cb.Update().Before("gorm:update").Register("gormcrypt:update", p.beforeUpdate),
		cb.Update().Before("gorm:update").After("gormcrypt:update").Register("gormcrypt:guard_update", guard(never)),
		cb.Update().After("gorm:update").Before("gorm:save_after_associations").Register("gormcrypt:unguard_update", p.uninstall),
		cb.Update().After("gorm:update").Register("gormcrypt:after_update", p.afterUpdate),
		cb.Query().Before("gorm:query").Register("gormcrypt:query", p.beforeQuery),
		cb.Query().Before("gorm:query").After("gormcrypt:query").Register("gormcrypt:guard_query", guard(p.queryDecrypts)),
		cb.Query().After("gorm:query").Before("gorm:preload").Register("gormcrypt:unguard_query", p.uninstall),
		cb.Query().After("gorm:query").Register("gormcrypt:after_query", p.afterQuery),
		cb.Delete().Before("gorm:delete").Register("gormcrypt:delete", p.beforeDelete),
		cb.Delete().Before("gorm:delete").After("gormcrypt:delete").Register("gormcrypt:guard_delete", guard(never)),
		cb.Delete().After("gorm:delete").Before("gorm:after_delete").Register("gormcrypt:unguard_delete", p.uninstall),
		cb.Row().Before("gorm:row").Register("gormcrypt:row", p.beforeRow),
		cb.Row().Before("gorm:row").After("gormcrypt:row").Register("gormcrypt:guard_row", guardRows),
		cb.Row().After("gorm:row").Register("gormcrypt:unguard_row", p.uninstall),
		cb.Raw().Before("gorm:raw").Register("gormcrypt:guard_raw", guard(never)),
		cb.Raw().After("gorm:raw").Register("gormcrypt:unguard_raw", p.uninstall),
	}
	return errors.Join(regs...)
}

// isNilKeySource reports a nil key source, including a typed nil pointer
// (var kr *keyring.Keyring; gormcrypt.New(kr)).
func isNilKeySource(k envelope.KeySource) bool {
	if k == nil {
		return true
	}
	rv := reflect.ValueOf(k)
	switch rv.Kind() {
	case reflect.Ptr, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

// Register prepares models for encryption without migrating them: it
// records their tables and encrypted columns, so statements that name a
// table instead of a model (db.Table("patients"), raw SQL) are encrypted,
// decrypted or refused like the model's own. AutoMigrate and Fields
// register too; call one of them at startup for every model with
// fieldcrypt tags.
func Register(db *gorm.DB, models ...any) error {
	p, err := pluginOf(db)
	if err != nil {
		return err
	}
	for _, m := range models {
		if _, err := p.prepareModel(db, m); err != nil {
			return fmt.Errorf("gormcrypt: register %T: %w", m, err)
		}
	}
	return nil
}

// pluginOf returns the gormcrypt plugin registered on db.
func pluginOf(db *gorm.DB) (*Plugin, error) {
	if v, ok := db.Config.Plugins[(&Plugin{}).Name()]; ok {
		if p, ok := v.(*Plugin); ok {
			return p, nil
		}
	}
	return nil, errors.New("gormcrypt: plugin not registered on this *gorm.DB (db.Use(gormcrypt.New(keys)))")
}
