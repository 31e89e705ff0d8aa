package gormcrypt

import (
	"context"
	"database/sql"
	"fmt"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
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
// It reads rows in primary-key order, batchSize at a time (0: 500), opens
// each value, computes its index and writes it with a compare-and-swap on
// the stored ciphertext, so a concurrent application write is never
// overwritten; it can run online and be rerun (already-current rows are
// only read). The tenant comes from ctx (WithTenant), as for every other
// statement, and so do the actor and purpose: the class's access policy
// applies as to any read (ErrPurposeRequired), and each decrypt is
// recorded as it says. The model needs a single-column primary key.
func RebuildBlindIndexes(ctx context.Context, db *gorm.DB, model any, batchSize int) ([]RebuildResult, error) {
	p, err := pluginOf(db)
	if err != nil {
		return nil, err
	}
	pl, err := p.prepareModel(db, model)
	if err != nil {
		return nil, err
	}
	if len(pl.pks) != 1 {
		return nil, fmt.Errorf("%w: RebuildBlindIndexes needs a single-column primary key (%s has %d)", ErrUnsupportedPath, pl.s.Name, len(pl.pks))
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

func (p *Plugin) rebuildField(ctx context.Context, db *gorm.DB, pl *plan, cf *cfield, batchSize int) (RebuildResult, error) {
	res := RebuildResult{Field: cf.Name, Column: cf.BlindIndex}
	st := &gorm.Statement{DB: db}
	qt, qpk, qc, qb := st.Quote(cf.Table), st.Quote(pl.pks[0].DBName), st.Quote(cf.Column), st.Quote(cf.BlindIndex)
	first := fmt.Sprintf("SELECT %s, %s, %s FROM %s ORDER BY %s LIMIT %d", qpk, qc, qb, qt, qpk, batchSize)
	next := fmt.Sprintf("SELECT %s, %s, %s FROM %s WHERE %s > ? ORDER BY %s LIMIT %d", qpk, qc, qb, qt, qpk, qpk, batchSize)
	cas := fmt.Sprintf("UPDATE %s SET %s = ? WHERE %s = ? AND %s = ?", qt, qb, qpk, qc)
	if db.Dialector.Name() == "mysql" { // compare bytes, not collation units
		cas = fmt.Sprintf("UPDATE %s SET %s = ? WHERE %s = ? AND CAST(%s AS BINARY) = CAST(? AS BINARY)", qt, qb, qpk, qc)
	}
	// The rebuild decrypts every value: the class's access policy applies
	// (a purpose where required) and each decrypt is recorded as it says.
	if err := p.admit(ctx, []*cfield{cf}); err != nil {
		return res, err
	}
	trusted := db.WithContext(context.WithValue(ctx, trustedKey{}, true))
	var last any
	for {
		var rows *sql.Rows
		var err error
		if last == nil { // trusted: the stored ciphertexts, not decrypted rows
			rows, err = trusted.Raw(first).Rows()
		} else {
			rows, err = trusted.Raw(next, last).Rows()
		}
		if err != nil {
			return res, cf.fail("rebuild-index", "", ErrDecrypt, err)
		}
		type item struct {
			pk        any
			ct, index sql.NullString
		}
		var batch []item
		for rows.Next() {
			var it item
			if err := rows.Scan(&it.pk, &it.ct, &it.index); err != nil {
				rows.Close()
				return res, cf.fail("rebuild-index", "", ErrDecrypt, err)
			}
			if b, ok := it.pk.([]byte); ok { // drivers reuse scan buffers
				it.pk = append([]byte(nil), b...)
			}
			batch = append(batch, it)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return res, cf.fail("rebuild-index", "", ErrDecrypt, err)
		}
		if len(batch) == 0 {
			return res, nil
		}
		for _, it := range batch {
			res.Rows++
			last = it.pk
			if !it.ct.Valid || !envelope.IsText(it.ct.String) {
				res.Skipped++
				continue
			}
			key := keyString(it.pk)
			row := ""
			if rowBound([]byte(it.ct.String)) {
				row = key
			}
			pt, err := p.env.Open(ctx, cf.binding(ctx, row), []byte(it.ct.String))
			p.opened(ctx, cf.binding(ctx, key), []byte(it.ct.String), err)
			if err != nil {
				res.Failed++
				if len(res.FailedRows) < 100 {
					res.FailedRows = append(res.FailedRows, key)
				}
				continue
			}
			idx, err := p.env.ComputeBlindIndex(ctx, cf.binding(ctx, ""), cf.BlindIndexSpec, pt)
			clear(pt)
			if err != nil {
				return res, cf.fail("rebuild-index", key, ErrEncrypt, err)
			}
			h := hexString(idx)
			if it.index.Valid && it.index.String == h {
				res.Current++
				continue
			}
			r := trusted.Exec(cas, h, it.pk, it.ct.String)
			if r.Error != nil {
				return res, cf.fail("rebuild-index", key, ErrEncrypt, r.Error)
			}
			if r.RowsAffected == 1 {
				res.Updated++
			} else {
				res.Skipped++
			}
		}
	}
}
