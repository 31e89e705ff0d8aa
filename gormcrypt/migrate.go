package gormcrypt

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// MigrationColumns describes the encrypted columns of model as the
// reencrypt engine takes them, from the model's `fieldcrypt` tags, so a
// migration does not restate them: the class, randomized or deterministic,
// bound to the row (as gormcrypt binds a randomized value to its primary
// key), the text form, the blind index with its spec, and a Canonical
// function turning the database's text of a legacy number, boolean, time
// or JSON value into the form gormcrypt seals. The tenant is ctx's
// (WithTenant); set Column.TenantColumn yourself when a column of the
// table holds each row's tenant.
func MigrationColumns(ctx context.Context, db *gorm.DB, model any) ([]reencrypt.Column, error) {
	_, pl, err := keyedPlan(db, model, "a migration")
	if err != nil {
		return nil, err
	}
	pk := make([]string, len(pl.pks))
	for i, f := range pl.pks {
		pk[i] = f.DBName
	}
	out := make([]reencrypt.Column, 0, len(pl.fields))
	for _, cf := range pl.fields {
		col := reencrypt.Column{
			Table: cf.Table, PK: strings.Join(pk, ", "), Column: cf.Column, Class: cf.Class,
			Tenant: tenantOf(ctx), Deterministic: cf.Mode == Deterministic, RowBound: cf.Mode != Deterministic,
			Text: true, Canonical: cf.canonical(),
		}
		if cf.BlindIndex != "" {
			col.BlindIndexes = []reencrypt.BlindIndex{{Column: cf.BlindIndex, Spec: cf.BlindIndexSpec}}
		}
		out = append(out, col)
	}
	return out, nil
}

// EncryptExisting migrates the encrypted columns of model: it runs the
// reencrypt engine in mode EncryptExisting on each column MigrationColumns
// describes, so every legacy plaintext is sealed and its blind index
// written in the same compare-and-swap (equality search finds the row, a
// unique index covers it), and the blind indexes an earlier migration
// left NULL are filled. opts are the engine's (workers, batch size, rate
// limit, job id, ...); Mode is set, and a JobID, when given, is suffixed
// with ":column" per column. It is online and resumable like the engine:
// rerun it until it reports nothing changed, then drop `migrate` from the
// tags. The tenant, purpose and actor come from ctx: the class's access
// policy applies (values may be opened to index them), and the run is
// recorded in the plugin's audit sink (WithAudit) unless opts.Audit names
// another.
//
// It returns one Summary per column, in the model's field order, up to the
// first column that failed.
func EncryptExisting(ctx context.Context, db *gorm.DB, model any, opts reencrypt.Options) ([]reencrypt.Summary, error) {
	cols, err := MigrationColumns(ctx, db, model)
	if err != nil {
		return nil, err
	}
	p, pl, err := modelPlan(db, model)
	if err != nil {
		return nil, err
	}
	if err := p.admit(ctx, pl.fields); err != nil {
		return nil, err
	}
	opts.Mode = reencrypt.EncryptExisting
	if opts.Audit == nil {
		// The job is recorded where the plugin records reads
		// (reencrypt.started, .finished, decrypt.failed), with ctx's
		// actor and purpose: the values it opens to index them are
		// accounted for by the job, not one record per value.
		opts.Audit = p.audit
	}
	jobID := opts.JobID
	out := make([]reencrypt.Summary, 0, len(cols))
	for _, col := range cols {
		o := opts
		if jobID != "" {
			o.JobID = jobID + ":" + col.Column
		}
		sum, err := reencrypt.Run(ctx, db, p.env, col, o)
		out = append(out, sum)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// canonical returns the function turning a legacy plaintext (the
// database's text of the old column) into what gormcrypt seals for the
// same Go value, or nil when they are the same bytes (strings, []byte).
func (cf *cfield) canonical() func([]byte) ([]byte, error) {
	switch cf.kind {
	case kString, kBytes:
		return nil
	case kTime:
		return canonicalTime
	}
	return func(b []byte) ([]byte, error) {
		v, err := cf.decode(b)
		if err != nil {
			return nil, err
		}
		pt, _, err := cf.plainOfValue(v, v.Interface())
		return pt, err
	}
}

// legacyTimeLayouts are the text forms of a time the three databases give
// (a timestamp column converted to text, or read as text). A time without
// a zone is taken as UTC.
var legacyTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02",
}

func canonicalTime(b []byte) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	for _, layout := range legacyTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.MarshalText()
		}
	}
	return nil, fmt.Errorf("not a time in a form the database writes (e.g. 2006-01-02 15:04:05+00)")
}
