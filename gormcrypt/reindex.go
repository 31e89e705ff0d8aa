package gormcrypt

import (
	"context"
	"database/sql"
	"errors"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/dbsql"
)

// RebuildResult says what RebuildBlindIndexes did to one blind-index
// column.
type RebuildResult struct {
	Field   string // the model's field
	Column  string // the blind-index column
	Rows    int64  // rows read
	Updated int64  // index rewritten under the current search key
	Current int64  // index already current
	// Skipped: NULL or legacy-plaintext values, and rows whose value
	// changed while the rebuild ran (their writer stored a fresh index).
	Skipped int64
	// Failed rows hold a value that does not open; FailedRows lists the
	// first 100 primary keys (never values).
	Failed     int64
	FailedRows []string
}

// trustedKey marks the rebuild's own compare-and-swap statements, which
// name an encrypted column with a ciphertext parameter and a hex index.
type trustedKey struct{}

// RebuildBlindIndexes recomputes every blind-index column of model under
// the current search key of its scope. Run it after a search-key rotation
// (fieldcrypt keys rotate --search), before dropping the older search keys
// (--finish-search): until then, queries match every live search key, so
// nothing becomes unfindable while it runs.
//
// It reads rows in primary-key order (a key of one column or several),
// batchSize at a time (0: 500), opens each value, computes its index and
// writes it with a compare-and-swap on the stored ciphertext, so a
// concurrent application write is never overwritten; it can run online
// and be rerun (already-current rows are only read). The tenant comes from
// ctx (WithTenant), as for every other statement, and so do the actor and
// purpose: the class's access policy applies as to any read
// (ErrPurposeRequired), and each decrypt is recorded as it says.
func RebuildBlindIndexes(ctx context.Context, db *gorm.DB, model any, batchSize int) ([]RebuildResult, error) {
	p, pl, err := keyedPlan(db, model, "RebuildBlindIndexes")
	if err != nil {
		return nil, err
	}
	if batchSize <= 0 {
		batchSize = 500
	}
	var out []RebuildResult
	for _, cf := range pl.fields {
		if cf.BlindIndex == "" {
			continue
		}
		res, err := p.rebuildField(ctx, db, pl, cf, batchSize)
		out = append(out, res)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// trustedQuerier runs the rebuild's own statements through GORM, marked
// trusted: the stored ciphertexts are read as they are (guarded, not
// decrypted), and the compare-and-swap may name the encrypted column with
// a ciphertext parameter.
type trustedQuerier struct{ db *gorm.DB }

func (q trustedQuerier) with(ctx context.Context) *gorm.DB {
	return q.db.WithContext(context.WithValue(ctx, trustedKey{}, true))
}

func (q trustedQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return q.with(ctx).Raw(query, args...).Rows()
}

func (q trustedQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r := q.with(ctx).Exec(query, args...)
	return affected(r.RowsAffected), r.Error
}

type affected int64

func (a affected) LastInsertId() (int64, error) { return 0, errors.New("not supported") }
func (a affected) RowsAffected() (int64, error) { return int64(a), nil }

func (p *Plugin) rebuildField(ctx context.Context, db *gorm.DB, pl *plan, cf *cfield, batchSize int) (RebuildResult, error) {
	res := RebuildResult{Field: cf.Name, Column: cf.BlindIndex}
	d, err := dbsql.Of(db)
	if err != nil {
		return res, cf.fail("rebuild-index", "", ErrUnsupportedPath, err)
	}
	// The rebuild decrypts every value: the class's access policy applies
	// (a purpose where required) and each decrypt is recorded as it says.
	if err := p.admit(ctx, []*cfield{cf}); err != nil {
		return res, err
	}
	keys := make([]string, len(pl.pks))
	for i, pk := range pl.pks {
		keys[i] = pk.DBName
	}
	t := dbsql.NewTable(d, cf.Table, keys)
	t.QMarks = true
	q := trustedQuerier{db: db}
	if err := t.Introspect(ctx, q); err != nil {
		return res, cf.fail("rebuild-index", "", ErrDecrypt, err)
	}
	cas := dbsql.CAS{Set: cf.BlindIndex, Cond: cf.Column}
	err = t.Walk(ctx, q, []string{cf.Column, cf.BlindIndex}, batchSize, func(batch []dbsql.Row) error {
		for _, rw := range batch {
			res.Rows++
			ct, index := nullString(rw.Vals[0]), nullString(rw.Vals[1])
			if !ct.Valid || !envelope.IsText(ct.String) {
				res.Skipped++
				continue
			}
			key := t.RowKey(rw.Key)
			row := ""
			if rowBound([]byte(ct.String)) {
				row = key
			}
			pt, err := p.env.Open(ctx, cf.binding(ctx, row), []byte(ct.String))
			p.opened(ctx, cf.binding(ctx, key), []byte(ct.String), err)
			if err != nil {
				res.Failed++
				if len(res.FailedRows) < 100 {
					res.FailedRows = append(res.FailedRows, key)
				}
				continue
			}
			h, err := p.env.ComputeBlindIndexText(ctx, cf.binding(ctx, ""), cf.BlindIndexSpec, pt)
			clear(pt)
			if err != nil {
				return cf.fail("rebuild-index", key, ErrEncrypt, err)
			}
			if index.Valid && index.String == h {
				res.Current++
				continue
			}
			ok, err := t.SwapOne(ctx, q, cas, dbsql.Swap{Key: rw.Key, Old: ct.String, New: h})
			if err != nil {
				return cf.fail("rebuild-index", key, ErrEncrypt, err)
			}
			if ok {
				res.Updated++
			} else {
				res.Skipped++
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrEncrypt) {
		err = cf.fail("rebuild-index", "", ErrDecrypt, err)
	}
	return res, err
}

// nullString reads a scanned text value.
func nullString(v any) sql.NullString {
	s, ok := dbsql.String(v)
	return sql.NullString{String: s, Valid: ok}
}
