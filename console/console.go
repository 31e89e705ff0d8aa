// Package console lets operators look at rows of a database that holds
// fieldcrypt ciphertexts without seeing their content, and reveal a value
// only when they state why, each reveal recorded.
//
// For the common case, build a Console over the database, the keyring and
// the encrypted columns, then Show rows:
//
//	c, _ := console.NewGorm(db, console.Config{Keys: kr, Audit: chain, Columns: cols})
//	res, _ := c.Show(ctx, console.Query{Table: "patients", Where: &console.Condition{Column: "ssn", Value: ssn}, Limit: 10})
//	res.WriteText(os.Stdout)
//
// Every encrypted value is shown as metadata read from its header, never
// decrypted: [critical v2, 41 B, row-bound]. Blind indexes are shown the
// same way, and so is anything in an encrypted column that is not a
// ciphertext (legacy plaintext is content too). Columns that are not
// encrypted are shown as the database holds them.
//
// Reveal decrypts the columns it names for the rows of the query, and only
// with a reason: one decrypt.access audit event per value names the table,
// column, row, class, KEK version, the actor (audit.WithActor on ctx) and
// the reason, never the value. Without a reason it fails with
// audit.ErrPurposeRequired and records the refusal; without a working
// audit sink it refuses too (ErrAuditUnavailable). A revealed value goes
// only into the Result, for the operator's screen: never into an event, a
// log or an error.
//
// Equality search works on deterministic and blind-indexed columns (the
// condition's value is turned into its ciphertexts or blind indexes under
// every live search key, and never recorded); on other encrypted columns it
// fails with ErrNotSearchable.
package console

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// Errors. Test with errors.Is.
var (
	// ErrNotSearchable: a condition names an encrypted column that is
	// neither deterministic nor blind-indexed.
	ErrNotSearchable = fielderr.New(fielderr.InvalidInput, "console: column is not searchable")
	// ErrNotEncrypted: Reveal names a column that is not a configured
	// encrypted column of the table.
	ErrNotEncrypted = fielderr.New(fielderr.InvalidInput, "console: not an encrypted column")
	// ErrAuditUnavailable: a reveal cannot be recorded (no audit sink, or
	// one reporting a failure): nothing is decrypted.
	ErrAuditUnavailable = fielderr.New(fielderr.Refused, "console: reveals must be recorded and the audit log is unavailable")
	// ErrInvalidQuery: a bad table or column name, limit or condition.
	ErrInvalidQuery = fielderr.New(fielderr.InvalidInput, "console: invalid query")
)

// Column describes one encrypted column.
type Column struct {
	Table  string
	Column string
	PK     string // single-column primary key, default "id"
	Class  envelope.Class
	// Deterministic columns are searchable on their own ciphertext.
	Deterministic bool
	// BlindIndex names the column holding the value's blind index (hex
	// text, as gormcrypt writes it), "" if none; BlindIndexSpec is its
	// configuration.
	BlindIndex     string
	BlindIndexSpec envelope.BlindIndex
	// Tenant is the fixed tenant of the values; TenantColumn, when set,
	// names the column holding each row's tenant.
	Tenant       string
	TenantColumn string
	// Binary: the column stores the binary ciphertext, not "fc1:" text.
	Binary bool
}

// Config is what a Console works with.
type Config struct {
	// Dialect is "sqlite", "postgres" or "mysql" (NewGorm fills it in).
	Dialect string
	// Keys opens values (a *keyring.Keyring) and computes search terms.
	Keys envelope.KeySource
	// Audit records shows, reveals and refusals. Reveal needs it.
	Audit audit.Sink
	// Columns are the encrypted columns.
	Columns []Column
}

// Console shows rows with their ciphertexts as metadata and reveals values
// on a stated reason. It is safe for concurrent use.
type Console struct {
	db  *sql.DB
	cfg Config
	env *envelope.Envelope
}

// New returns a console over db.
func New(db *sql.DB, cfg Config) (*Console, error) {
	switch cfg.Dialect {
	case "sqlite", "postgres", "mysql":
	default:
		return nil, fmt.Errorf("%w: dialect %q (want sqlite, postgres or mysql)", ErrInvalidQuery, cfg.Dialect)
	}
	for i := range cfg.Columns {
		c := &cfg.Columns[i]
		if c.PK == "" {
			c.PK = "id"
		}
		for _, name := range []string{c.Table, c.Column, c.PK, c.BlindIndex, c.TenantColumn} {
			if name != "" && !identRE.MatchString(name) {
				return nil, fmt.Errorf("%w: column %s.%s: bad name %q", ErrInvalidQuery, c.Table, c.Column, name)
			}
		}
		if !c.Class.Encrypted() {
			return nil, fmt.Errorf("%w: column %s.%s: class %s is not encrypted", ErrInvalidQuery, c.Table, c.Column, c.Class)
		}
	}
	var env *envelope.Envelope
	if cfg.Keys != nil {
		env = envelope.New(cfg.Keys)
	}
	return &Console{db: db, cfg: cfg, env: env}, nil
}

// NewGorm returns a console over the connection pool of a *gorm.DB. The
// console reads with plain SQL: a gormcrypt plugin on db plays no part.
func NewGorm(db *gorm.DB, cfg Config) (*Console, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	cfg.Dialect = db.Dialector.Name()
	return New(sqlDB, cfg)
}

// identRE is a table or column name, optionally schema-qualified.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$`)

// Condition is an equality condition: Column = Value. Value is a plaintext
// for an encrypted column; it is never recorded or printed.
type Condition struct {
	Column string
	Value  string
}

// Query selects rows of a table.
type Query struct {
	Table string
	Where *Condition
	Limit int // default 20, at most 1000
	// Tenant is the tenant of a search on an encrypted column and of
	// values whose column has no tenant column.
	Tenant string
}

// MaxLimit bounds a query's rows.
const MaxLimit = 1000

// columns returns the configured encrypted columns of table.
func (c *Console) columns(table string) map[string]*Column {
	out := map[string]*Column{}
	for i := range c.cfg.Columns {
		col := &c.cfg.Columns[i]
		if strings.EqualFold(col.Table, table) {
			out[strings.ToLower(col.Column)] = col
		}
	}
	return out
}

// Show returns the rows of q with every encrypted value as metadata, and
// records one console.show event (table, condition column, row count;
// never the condition's value).
func (c *Console) Show(ctx context.Context, q Query) (*Result, error) {
	res, err := c.query(ctx, q, nil)
	if err != nil {
		return nil, err
	}
	c.recordShow(ctx, q, res, "")
	return res, nil
}

// Reveal is Show, with the values of the reveal columns decrypted for the
// rows of q. It refuses without a reason (audit.ErrPurposeRequired) or an
// audit sink that can record (ErrAuditUnavailable), before it reads
// anything; each value revealed is one decrypt.access event with the
// reason as its purpose. Values that fail to open are shown as failures
// (a decrypt.failed event each) and the error names the first.
func (c *Console) Reveal(ctx context.Context, q Query, reveal []string, reason string) (*Result, error) {
	reason = strings.TrimSpace(reason)
	enc := c.columns(q.Table)
	var cols []*Column
	for _, name := range reveal {
		col := enc[strings.ToLower(name)]
		if col == nil {
			return nil, fmt.Errorf("%w: %s.%s (configure it among the encrypted columns)", ErrNotEncrypted, q.Table, name)
		}
		cols = append(cols, col)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("%w: no column to reveal", ErrInvalidQuery)
	}
	if reason == "" {
		err := fmt.Errorf("%w: a reveal needs a reason (--reason)", audit.ErrPurposeRequired)
		if c.cfg.Audit != nil {
			for _, col := range cols {
				c.cfg.Audit.Record(ctx, audit.Event{Type: audit.DecryptRefused, Outcome: audit.Error, Class: col.Class.String(),
					Table: col.Table, Column: col.Column, Error: err.Error()})
			}
		}
		return nil, err
	}
	if c.cfg.Audit == nil {
		return nil, ErrAuditUnavailable
	}
	if err := audit.SinkErr(c.cfg.Audit); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuditUnavailable, err)
	}
	if c.env == nil {
		return nil, fmt.Errorf("%w: the console has no key source", ErrInvalidQuery)
	}
	res, err := c.query(ctx, q, cols)
	if err != nil {
		return nil, err
	}
	ctx = audit.WithPurpose(ctx, reason)
	first := c.reveal(ctx, q, res, cols)
	c.recordShow(ctx, q, res, reason)
	// The values leave only once their events are written.
	if err := audit.FlushSink(c.cfg.Audit); err != nil {
		res.forget()
		return nil, fmt.Errorf("%w: %w", ErrAuditUnavailable, err)
	}
	return res, first
}

func (c *Console) recordShow(ctx context.Context, q Query, res *Result, reason string) {
	if c.cfg.Audit == nil {
		return
	}
	e := audit.Event{Type: audit.ConsoleShow, Table: q.Table, Purpose: reason,
		Counts: map[string]int64{"rows": int64(len(res.Rows)), "revealed": int64(res.Revealed), "failed": int64(res.Failed)}}
	if q.Where != nil {
		e.Column = q.Where.Column
	}
	c.cfg.Audit.Record(ctx, e)
}

// FromFields returns the columns of a gormcrypt model (gormcrypt.Fields),
// whose primary key column is pk.
func FromFields(pk string, fields ...gormcrypt.Field) []Column {
	out := make([]Column, len(fields))
	for i, f := range fields {
		out[i] = Column{Table: f.Table, Column: f.Column, PK: pk, Class: f.Class, Deterministic: f.Mode == gormcrypt.Deterministic,
			BlindIndex: f.BlindIndex, BlindIndexSpec: f.BlindIndexSpec}
	}
	return out
}
