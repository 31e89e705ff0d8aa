package reencrypt

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"gorm.io/gorm"
)

type dialect int

const (
	dSQLite dialect = iota
	dPostgres
	dMySQL
)

func dialectOf(db *gorm.DB) (dialect, error) {
	switch db.Dialector.Name() {
	case "sqlite":
		return dSQLite, nil
	case "postgres":
		return dPostgres, nil
	case "mysql":
		return dMySQL, nil
	}
	return 0, fmt.Errorf("%w: unsupported database %q (want postgres, mysql or sqlite)", ErrInvalidOptions, db.Dialector.Name())
}

// quote quotes a validated identifier (possibly schema.table).
func (d dialect) quote(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if d == dMySQL {
			parts[i] = "`" + p + "`"
		} else {
			parts[i] = `"` + p + `"`
		}
	}
	return strings.Join(parts, ".")
}

// sqlBuf builds a statement with the dialect's placeholders.
type sqlBuf struct {
	d    dialect
	b    strings.Builder
	args []any
}

func (s *sqlBuf) w(parts ...string) *sqlBuf {
	for _, p := range parts {
		s.b.WriteString(p)
	}
	return s
}

// p writes a placeholder for v.
func (s *sqlBuf) p(v any) *sqlBuf {
	s.args = append(s.args, v)
	if s.d == dPostgres {
		s.b.WriteByte('$')
		s.b.WriteString(strconv.Itoa(len(s.args)))
	} else {
		s.b.WriteByte('?')
	}
	return s
}

func (s *sqlBuf) String() string { return s.b.String() }

// querier is *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// row is one row as read.
type row struct {
	pk     any    // int64 or string
	key    string // Binding.Row
	val    []byte // nil when NULL
	tenant string
}

// pkNorm normalizes a scanned primary key to int64 or string.
func (r *runner) pkNorm(v any) any {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint64:
		return int64(x)
	case []byte:
		if r.intPK {
			if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				return n
			}
		}
		return string(x)
	case string:
		if r.intPK {
			if n, err := strconv.ParseInt(x, 10, 64); err == nil {
				return n
			}
		}
		return x
	}
	return fmt.Sprint(v)
}

// pkText is how a normalized key is stored in the chunk table.
func pkText(pk any) string {
	switch x := pk.(type) {
	case int64:
		return strconv.FormatInt(x, 10)
	case string:
		return x
	}
	return fmt.Sprint(pk)
}

// pkArg turns a stored bound back into a query argument.
func (r *runner) pkArg(s string) any {
	if r.intPK {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return s
}

func valBytes(v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case []byte:
		return append([]byte{}, x...), true
	case string:
		return []byte(x), true
	}
	return []byte(fmt.Sprint(v)), true
}

func strVal(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

func (r *runner) selectCols() string {
	s := r.qpk + ", " + r.qc
	if r.qten != "" {
		s += ", " + r.qten
	}
	return s
}

func (r *runner) scanRows(rows *sql.Rows) ([]row, error) {
	defer rows.Close()
	var out []row
	for rows.Next() {
		var pk, v, ten any
		dest := []any{&pk, &v}
		if r.qten != "" {
			dest = append(dest, &ten)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		rw := row{pk: r.pkNorm(pk)}
		rw.val, _ = valBytes(v)
		rw.key = r.col.rowKey(rw.pk)
		if r.qten != "" {
			rw.tenant = strVal(ten)
		} else {
			rw.tenant = r.col.Tenant
		}
		out = append(out, rw)
	}
	return out, rows.Err()
}

// readBatch reads up to limit rows with after < pk <= hi in key order (nil
// bounds are open).
func (r *runner) readBatch(ctx context.Context, q querier, after, hi *string, limit int) ([]row, error) {
	s := &sqlBuf{d: r.d}
	s.w("SELECT ", r.selectCols(), " FROM ", r.qt)
	where := " WHERE "
	if after != nil {
		s.w(where, r.qpk, " > ").p(r.pkArg(*after))
		where = " AND "
	}
	if hi != nil {
		s.w(where, r.qpk, " <= ").p(r.pkArg(*hi))
	}
	s.w(" ORDER BY ", r.qpk, " LIMIT ", strconv.Itoa(limit))
	rows, err := q.QueryContext(ctx, s.String(), s.args...)
	if err != nil {
		return nil, fmt.Errorf("reencrypt: reading %s: %w", r.col.Table, err)
	}
	return r.scanRows(rows)
}

// readLocked re-reads rows by key, locking them where the database can.
func (r *runner) readLocked(ctx context.Context, q querier, pks []any) ([]row, error) {
	s := &sqlBuf{d: r.d}
	s.w("SELECT ", r.selectCols(), " FROM ", r.qt, " WHERE ", r.qpk, " IN (")
	for i, pk := range pks {
		if i > 0 {
			s.w(",")
		}
		s.p(pk)
	}
	s.w(") ORDER BY ", r.qpk)
	if r.d != dSQLite {
		s.w(" FOR UPDATE")
	}
	rows, err := q.QueryContext(ctx, s.String(), s.args...)
	if err != nil {
		return nil, fmt.Errorf("reencrypt: re-reading %s: %w", r.col.Table, err)
	}
	return r.scanRows(rows)
}

// update is one compare-and-swap.
type update struct {
	pk       any
	old, new []byte
}

func (r *runner) valArg(b []byte) any {
	if r.col.Text {
		return string(b)
	}
	return b
}

// bulkCAS swaps every u.old for u.new in one statement and returns the keys
// (pkText) of the rows it changed.
func (r *runner) bulkCAS(ctx context.Context, q querier, ups []update) (map[string]bool, error) {
	applied := make(map[string]bool, len(ups))
	if len(ups) == 0 {
		return applied, nil
	}
	s := &sqlBuf{d: r.d}
	s.b.Grow(64 + len(ups)*48)
	switch r.d {
	case dPostgres:
		s.w("UPDATE ", r.qt, " AS t SET ", r.qc, " = v.nv FROM (VALUES ")
		for i, u := range ups {
			if i > 0 {
				s.w(",")
			}
			s.w("(CAST(").p(u.pk).w(" AS ", r.pkType, "),CAST(").p(r.valArg(u.old)).w(" AS ", r.colType, "),CAST(").p(r.valArg(u.new)).w(" AS ", r.colType, "))")
		}
		s.w(") AS v(pk, ov, nv) WHERE t.", r.qpk, " = v.pk AND t.", r.qc, " = v.ov RETURNING t.", r.qpk)
	case dSQLite:
		s.w("UPDATE ", r.qt, " SET ", r.qc, " = v.nv FROM (SELECT column1 AS pk, column2 AS ov, column3 AS nv FROM (VALUES ")
		for i, u := range ups {
			if i > 0 {
				s.w(",")
			}
			s.w("(").p(u.pk).w(",").p(r.valArg(u.old)).w(",").p(r.valArg(u.new)).w(")")
		}
		s.w(")) AS v WHERE ", r.qt, ".", r.qpk, " = v.pk AND ", r.qt, ".", r.qc, " = v.ov RETURNING ", r.qpk)
	case dMySQL:
		// Values travel as binary strings: a binary value is not valid
		// in the connection's character set.
		open, close := "CAST(", " AS BINARY)"
		if r.col.Text {
			open, close = "", ""
		}
		s.w("UPDATE ", r.qt, " AS t JOIN (")
		for i, u := range ups {
			if i == 0 {
				s.w("SELECT ").p(u.pk).w(" AS pk, ", open).p(r.valArg(u.old)).w(close, " AS ov, ", open).p(r.valArg(u.new)).w(close, " AS nv")
			} else {
				s.w(" UNION ALL SELECT ").p(u.pk).w(",", open).p(r.valArg(u.old)).w(close, ",", open).p(r.valArg(u.new)).w(close)
			}
		}
		// Compare bytes, not collation units: a case- or pad-insensitive
		// collation must not let a different value pass the swap.
		s.w(") AS v ON t.", r.qpk, " = v.pk AND CAST(t.", r.qc, " AS BINARY) = CAST(v.ov AS BINARY) SET t.", r.qc, " = v.nv")
		res, err := q.ExecContext(ctx, s.String(), s.args...)
		if err != nil {
			return nil, fmt.Errorf("reencrypt: swapping %s.%s: %w", r.col.Table, r.col.Column, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, err
		}
		if int(n) == len(ups) {
			for _, u := range ups {
				applied[pkText(u.pk)] = true
			}
			return applied, nil
		}
		// Some rows changed under us: the rows now holding our new value
		// are the ones we swapped. (Should someone else have written the
		// very same bytes, a rewrap of the same value by another process,
		// the row holds the target value either way.)
		pks := make([]any, len(ups))
		for i, u := range ups {
			pks[i] = u.pk
		}
		now, err := r.readLocked(ctx, q, pks)
		if err != nil {
			return nil, err
		}
		want := make(map[string][]byte, len(ups))
		for _, u := range ups {
			want[pkText(u.pk)] = u.new
		}
		for _, rw := range now {
			k := pkText(rw.pk)
			if w, ok := want[k]; ok && string(w) == string(rw.val) {
				applied[k] = true
			}
		}
		return applied, nil
	}
	rows, err := q.QueryContext(ctx, s.String(), s.args...)
	if err != nil {
		return nil, fmt.Errorf("reencrypt: swapping %s.%s: %w", r.col.Table, r.col.Column, err)
	}
	defer rows.Close()
	for rows.Next() {
		var pk any
		if err := rows.Scan(&pk); err != nil {
			return nil, err
		}
		applied[pkText(r.pkNorm(pk))] = true
	}
	return applied, rows.Err()
}

// isRetryable reports a deadlock or serialization failure.
func isRetryable(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	for _, m := range []string{"40P01", "40001", "deadlock", "Deadlock", "Error 1213", "Error 1205", "database is locked", "SQLITE_BUSY"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}
