package gormcrypt

import (
	"context"
	"errors"
	"strings"
	"sync"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Sentinel errors. Every error gormcrypt returns wraps one of them (and,
// where a key or a ciphertext was involved, the envelope sentinel too, so
// errors.Is(err, envelope.ErrAuthentication) works). No error ever contains
// a plaintext or key material.
var (
	// ErrDecrypt means a stored value could not be decrypted: it failed
	// authentication (tampered, or copied from another row, column, class or
	// tenant), its key is unknown or destroyed, or it is malformed.
	ErrDecrypt = errors.New("gormcrypt: cannot decrypt value")
	// ErrEncrypt means a value could not be encrypted (key unavailable,
	// unsupported Go type, SQL expression given for an encrypted column).
	ErrEncrypt = errors.New("gormcrypt: cannot encrypt value")
	// ErrNotCiphertext means an encrypted column holds a value without the
	// "fc1:" prefix and the field does not opt in to migration. It is
	// reported together with ErrDecrypt.
	ErrNotCiphertext = errors.New("gormcrypt: plaintext found in an encrypted column")
	// ErrUnsupportedPath means the statement would move an encrypted column
	// through a path gormcrypt cannot protect (a plaintext in raw SQL, a
	// ciphertext scanned into a map without a model, Pluck, ...). The
	// statement is not executed (for reads: the result is not returned).
	ErrUnsupportedPath = errors.New("gormcrypt: unsupported path for an encrypted column")
	// ErrNotSearchable means an equality condition names a randomized
	// encrypted column: add `deterministic` or `blindindex` to its tag.
	ErrNotSearchable = errors.New("gormcrypt: column is not searchable")
	// ErrTag means a fieldcrypt struct tag is invalid.
	ErrTag = errors.New("gormcrypt: invalid fieldcrypt tag")
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
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "fieldcrypt: "))
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
	audit audit.Sink // nil: no audit events
	mu    sync.Mutex
	plans sync.Map // *schema.Schema -> *plan
	// tables maps a table name to its plan, for raw SQL checks.
	tables sync.Map // string -> *plan
}

// New returns the plugin, taking keys from keys (a *keyring.Keyring in an
// application, envelopetest.New() in tests).
func New(keys envelope.KeySource) *Plugin {
	return &Plugin{env: envelope.New(keys)}
}

// Name implements gorm.Plugin.
func (p *Plugin) Name() string { return "fieldcrypt:gormcrypt" }

// Initialize implements gorm.Plugin: it registers the callbacks.
func (p *Plugin) Initialize(db *gorm.DB) error {
	cb := db.Callback()
	regs := []error{
		cb.Create().Before("gorm:create").Register("gormcrypt:create", p.beforeCreate),
		cb.Update().Before("gorm:update").Register("gormcrypt:update", p.beforeUpdate),
		cb.Update().After("gorm:update").Register("gormcrypt:after_update", p.afterUpdate),
		cb.Query().Before("gorm:query").Register("gormcrypt:query", p.beforeQuery),
		cb.Query().After("gorm:query").Register("gormcrypt:after_query", p.afterQuery),
		cb.Delete().Before("gorm:delete").Register("gormcrypt:delete", p.beforeDelete),
		cb.Row().Before("gorm:row").Register("gormcrypt:row", p.beforeRow),
		cb.Raw().Before("gorm:raw").Register("gormcrypt:raw", p.beforeRaw),
	}
	return errors.Join(regs...)
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
