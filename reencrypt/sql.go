package reencrypt

import (
	"context"
	"fmt"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/internal/dbsql"
)

// querier is *sql.DB or *sql.Tx.
type querier = dbsql.Querier

// row is one row as read.
type row struct {
	pk     []any  // the primary key, normalized (int64 or string per column)
	key    string // Binding.Row
	val    []byte // nil when NULL
	tenant string
	// idxNull says, per Column.BlindIndexes, whether the index is NULL
	// (read only when the run writes or counts indexes).
	idxNull []bool
}

// missingIndex reports whether a blind index of the row is NULL.
func (rw row) missingIndex() bool {
	for _, n := range rw.idxNull {
		if n {
			return true
		}
	}
	return false
}

// pkColumns splits Column.PK ("id", or "tenant_id, id" for a composite
// key).
func pkColumns(pk string) []string {
	parts := strings.Split(pk, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func valBytes(v any) []byte {
	if b, ok := v.([]byte); ok {
		return b
	}
	if s, ok := dbsql.String(v); ok {
		return []byte(s)
	}
	return nil
}

// cols are the columns read besides the key: the value, the tenant, and
// the blind indexes (when they are written or counted).
func (r *runner) cols() []string {
	out := []string{r.col.Column}
	if r.col.TenantColumn != "" {
		out = append(out, r.col.TenantColumn)
	}
	if r.readIndexes {
		for _, bi := range r.col.BlindIndexes {
			out = append(out, bi.Column)
		}
	}
	return out
}

func (r *runner) rows(in []dbsql.Row) []row {
	out := make([]row, len(in))
	for i, dr := range in {
		rw := row{pk: dr.Key, val: valBytes(dr.Vals[0]), tenant: r.col.Tenant}
		rw.key = r.col.rowKey(r.t, dr.Key)
		next := 1
		if r.col.TenantColumn != "" {
			rw.tenant, _ = dbsql.String(dr.Vals[1])
			next++
		}
		if r.readIndexes {
			rw.idxNull = make([]bool, len(r.col.BlindIndexes))
			for j := range rw.idxNull {
				rw.idxNull[j] = dr.Vals[next+j] == nil
			}
		}
		out[i] = rw
	}
	return out
}

// bound parses a stored bound (nil: open).
func (r *runner) bound(s *string) ([]any, error) {
	if s == nil {
		return nil, nil
	}
	return r.t.Parse(*s)
}

// readBatch reads up to limit rows with after < pk <= hi in key order (nil
// bounds are open).
func (r *runner) readBatch(ctx context.Context, q querier, after, hi *string, limit int) ([]row, error) {
	a, err := r.bound(after)
	if err != nil {
		return nil, err
	}
	h, err := r.bound(hi)
	if err != nil {
		return nil, err
	}
	rows, err := r.t.Read(ctx, q, r.cols(), a, h, limit)
	if err != nil {
		return nil, fmt.Errorf("reencrypt: %w", err)
	}
	return r.rows(rows), nil
}

// readLocked re-reads rows by key, locking them where the database can.
func (r *runner) readLocked(ctx context.Context, q querier, pks [][]any) ([]row, error) {
	rows, err := r.t.ReadKeys(ctx, q, r.cols(), pks)
	if err != nil {
		return nil, fmt.Errorf("reencrypt: re-%w", err)
	}
	return r.rows(rows), nil
}

// update is one compare-and-swap.
type update struct {
	pk       []any
	old, new []byte
	// idx are the blind indexes written with new (nil: none);
	// indexOnly says new is old (only the indexes are missing).
	idx       []any
	indexOnly bool
}

func (r *runner) valArg(b []byte) any {
	if r.col.Text {
		return string(b)
	}
	return b
}

// bulkCAS swaps every u.old for u.new in one statement and returns the keys
// (Table.Text) of the rows it changed.
func (r *runner) bulkCAS(ctx context.Context, q querier, ups []update) (map[string]bool, error) {
	swaps := make([]dbsql.Swap, len(ups))
	cas := dbsql.CAS{Set: r.col.Column, Cond: r.col.Column, SetType: r.colType, CondType: r.colType, Binary: !r.col.Text}
	if ups[0].idx != nil {
		// The indexes travel in the same statement as the value, under
		// the same compare-and-swap: a row is encrypted and searchable,
		// or untouched.
		for i, bi := range r.col.BlindIndexes {
			cas.Also = append(cas.Also, bi.Column)
			cas.AlsoTypes = append(cas.AlsoTypes, r.idxTypes[i])
		}
	}
	for i, u := range ups {
		swaps[i] = dbsql.Swap{Key: u.pk, Old: r.valArg(u.old), New: r.valArg(u.new), Also: u.idx}
	}
	applied, err := r.t.Apply(ctx, q, cas, swaps)
	if err != nil {
		return nil, fmt.Errorf("reencrypt: swapping %s.%s: %w", r.col.Table, r.col.Column, err)
	}
	return applied, nil
}
