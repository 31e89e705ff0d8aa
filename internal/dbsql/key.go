package dbsql

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Table is a table walked in primary-key order: its key is one column or
// several.
type Table struct {
	D    Dialect
	Name string
	Key  []string // primary key columns
	// QMarks writes ? placeholders on every dialect (for a Querier over
	// GORM, which rewrites them itself).
	QMarks bool
	qt     string
	qk     []string
	ints   []bool   // key column holds integers
	types  []string // PostgreSQL types of the key columns
}

// NewTable describes table with primary key columns key (at least one).
func NewTable(d Dialect, name string, key []string) *Table {
	t := &Table{D: d, Name: name, Key: key, qt: d.Quote(name), ints: make([]bool, len(key)), types: make([]string, len(key))}
	for _, k := range key {
		t.qk = append(t.qk, d.Quote(k))
	}
	return t
}

func (t *Table) buf() *Buf { return &Buf{D: t.D, QMarks: t.QMarks} }

// Quoted returns the table's quoted name.
func (t *Table) Quoted() string { return t.qt }

// Introspect learns which key columns hold integers (so bounds read back
// from text compare as numbers) and, on PostgreSQL, their types.
func (t *Table) Introspect(ctx context.Context, q Querier) error {
	// An argument forces MySQL's binary protocol, which returns integers
	// as int64 rather than as text.
	s := t.buf()
	s.W("SELECT ", t.keyList(""), " FROM ", t.qt, " WHERE 1 = ").P(1).W(" ORDER BY ", t.keyList(""), " LIMIT 1")
	rows, err := q.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return fmt.Errorf("reading %s: %w", t.Name, err)
	}
	vals := make([]any, len(t.Key))
	ptrs := make([]any, len(t.Key))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return err
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for i, v := range vals {
		switch v.(type) {
		case int64, int32, int, uint64:
			t.ints[i] = true
		}
		if t.D == Postgres {
			if t.types[i], err = columnType(ctx, q, t.buf(), t.Name, t.Key[i]); err != nil {
				return err
			}
			switch t.types[i] {
			case "bigint", "integer", "smallint":
				t.ints[i] = true
			}
		}
	}
	return nil
}

// keyList is the key columns, each prefixed ("t." or "").
func (t *Table) keyList(prefix string) string {
	out := make([]string, len(t.qk))
	for i, k := range t.qk {
		out[i] = prefix + k
	}
	return strings.Join(out, ", ")
}

// compare writes "key op bound": a > ? for one column, (a, b) > (?, ?)
// for several.
func (t *Table) compare(s *Buf, op string, bound []any) {
	if len(t.qk) == 1 {
		s.W(t.qk[0], " ", op, " ").P(bound[0])
		return
	}
	s.W("(", t.keyList(""), ") ", op, " (")
	for i, v := range bound {
		if i > 0 {
			s.W(", ")
		}
		s.P(v)
	}
	s.W(")")
}

// match writes a condition true for the rows whose keys are in keys.
func (t *Table) match(s *Buf, prefix string, keys [][]any) {
	if len(t.qk) == 1 {
		s.W(prefix, t.qk[0], " IN (")
		for i, k := range keys {
			if i > 0 {
				s.W(",")
			}
			s.P(k[0])
		}
		s.W(")")
		return
	}
	s.W("(")
	for i, k := range keys {
		if i > 0 {
			s.W(" OR ")
		}
		s.W("(")
		for j, v := range k {
			if j > 0 {
				s.W(" AND ")
			}
			s.W(prefix, t.qk[j], " = ").P(v)
		}
		s.W(")")
	}
	s.W(")")
}

// Norm normalizes a scanned key to int64 or string per column.
func (t *Table) Norm(vals []any) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = t.norm(i, v)
	}
	return out
}

func (t *Table) norm(i int, v any) any {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint64:
		return int64(x)
	case [16]byte: // a driver's UUID
		return envelope.RowKey(x)
	case []byte:
		if t.ints[i] {
			if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				return n
			}
		}
		return string(x)
	case string:
		if t.ints[i] {
			if n, err := strconv.ParseInt(x, 10, 64); err == nil {
				return n
			}
		}
		return x
	}
	return fmt.Sprint(v)
}

// Text encodes a normalized key for storage (chunk bounds, checkpoints):
// a one-column key as its value's text, a composite key as a JSON array.
func (t *Table) Text(key []any) string {
	if len(key) == 1 {
		switch x := key[0].(type) {
		case int64:
			return strconv.FormatInt(x, 10)
		case string:
			return x
		}
		return fmt.Sprint(key[0])
	}
	b, _ := json.Marshal(key)
	return string(b)
}

// Parse decodes what Text encoded.
func (t *Table) Parse(s string) ([]any, error) {
	if len(t.Key) == 1 {
		return []any{t.norm(0, s)}, nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil || len(raw) != len(t.Key) {
		return nil, fmt.Errorf("stored key %q of %s is not a %d-column key", s, t.Name, len(t.Key))
	}
	out := make([]any, len(raw))
	for i, r := range raw {
		var n int64
		var str string
		if err := json.Unmarshal(r, &n); err == nil {
			out[i] = n
		} else if err := json.Unmarshal(r, &str); err == nil {
			out[i] = t.norm(i, str)
		} else {
			return nil, fmt.Errorf("stored key %q of %s: bad element", s, t.Name)
		}
	}
	return out, nil
}

// RowKey renders a normalized key as envelope.Binding.Row: envelope.RowKeys.
func (t *Table) RowKey(key []any) string { return envelope.RowKeys(key...) }

// Row is one row as read: its normalized key and the selected columns.
type Row struct {
	Key  []any
	Vals []any
}

// Read reads up to limit rows with after < key <= hi in key order (nil
// bounds are open), selecting cols.
func (t *Table) Read(ctx context.Context, q Querier, cols []string, after, hi []any, limit int) ([]Row, error) {
	s := t.buf()
	t.selectFrom(s, cols)
	where := " WHERE "
	if after != nil {
		s.W(where)
		t.compare(s, ">", after)
		where = " AND "
	}
	if hi != nil {
		s.W(where)
		t.compare(s, "<=", hi)
	}
	s.W(" ORDER BY ", t.keyList(""), " LIMIT ", strconv.Itoa(limit))
	return t.query(ctx, q, s, len(cols))
}

// ReadKeys re-reads the rows with the given keys in key order, locking them
// where the database can (FOR UPDATE; SQLite locks the whole database).
func (t *Table) ReadKeys(ctx context.Context, q Querier, cols []string, keys [][]any) ([]Row, error) {
	s := t.buf()
	t.selectFrom(s, cols)
	s.W(" WHERE ")
	t.match(s, "", keys)
	s.W(" ORDER BY ", t.keyList(""))
	if t.D != SQLite {
		s.W(" FOR UPDATE")
	}
	return t.query(ctx, q, s, len(cols))
}

func (t *Table) selectFrom(s *Buf, cols []string) {
	s.W("SELECT ", t.keyList(""))
	for _, c := range cols {
		s.W(", ", t.D.Quote(c))
	}
	s.W(" FROM ", t.qt)
}

func (t *Table) query(ctx context.Context, q Querier, s *Buf, ncols int) ([]Row, error) {
	rows, err := q.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", t.Name, err)
	}
	defer rows.Close()
	var out []Row
	n := len(t.Key)
	for rows.Next() {
		vals := make([]any, n+ncols)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i := n; i < len(vals); i++ {
			if b, ok := vals[i].([]byte); ok { // drivers reuse scan buffers
				vals[i] = append([]byte{}, b...)
			}
		}
		out = append(out, Row{Key: t.Norm(vals[:n]), Vals: vals[n:]})
	}
	return out, rows.Err()
}

// EachKey calls fn with every key of the table, in key order, from one
// query (planning reads the keys once).
func (t *Table) EachKey(ctx context.Context, q Querier, fn func(key []any)) error {
	s := t.buf()
	t.selectFrom(s, nil)
	s.W(" ORDER BY ", t.keyList(""))
	rows, err := q.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return fmt.Errorf("reading %s: %w", t.Name, err)
	}
	defer rows.Close()
	vals := make([]any, len(t.Key))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		fn(t.Norm(vals))
	}
	return rows.Err()
}

// Walk reads the whole table in key order, batch rows at a time, and calls
// fn with each batch. It stops at fn's first error.
func (t *Table) Walk(ctx context.Context, q Querier, cols []string, batch int, fn func([]Row) error) error {
	var after []any
	for {
		rows, err := t.Read(ctx, q, cols, after, nil, batch)
		if err != nil {
			return err
		}
		if err := fn(rows); err != nil {
			return err
		}
		if len(rows) < batch {
			return nil
		}
		after = rows[len(rows)-1].Key
	}
}

// Swap is one compare-and-swap: set the column to New where the row's key
// is Key and its compared column holds exactly Old.
type Swap struct {
	Key      []any
	Old, New any
	// Also holds the values of CAS.Also, in order: written in the same
	// statement, under the same condition.
	Also []any
}

// CAS describes a compare-and-swap statement: Set is the column written,
// Cond the column compared (they may be the same), with their PostgreSQL
// types for casts (ColumnType), and Binary says the values are binary (on
// MySQL they travel as binary strings).
type CAS struct {
	Set, Cond         string
	SetType, CondType string
	Binary            bool
	// Also names more columns the swap writes (Swap.Also holds their
	// values), with their PostgreSQL types in AlsoTypes: text values
	// (such as blind indexes), written together with Set or not at all.
	Also      []string
	AlsoTypes []string
}

// alsoSet writes ", col = v.aN" for every CAS.Also column.
func (c CAS) alsoSet(s *Buf, d Dialect, prefix string) {
	for i, a := range c.Also {
		s.W(", ", prefix, d.Quote(a), " = v.a", strconv.Itoa(i))
	}
}

// Apply swaps every s.Old for s.New in one statement and returns the keys
// (Text) of the rows it changed. Comparisons are on bytes, never on
// collation units, so a case- or pad-insensitive collation cannot let a
// different value pass.
func (t *Table) Apply(ctx context.Context, q Querier, c CAS, swaps []Swap) (map[string]bool, error) {
	applied := make(map[string]bool, len(swaps))
	if len(swaps) == 0 {
		return applied, nil
	}
	qs, qc := t.D.Quote(c.Set), t.D.Quote(c.Cond)
	n := len(t.Key)
	s := t.buf()
	switch t.D {
	case Postgres:
		s.W("UPDATE ", t.qt, " AS t SET ", qs, " = v.nv")
		c.alsoSet(s, t.D, "")
		s.W(" FROM (VALUES ")
		for i, sw := range swaps {
			if i > 0 {
				s.W(",")
			}
			s.W("(")
			for j, k := range sw.Key {
				s.W("CAST(").P(k).W(" AS ", t.types[j], "),")
			}
			s.W("CAST(").P(sw.Old).W(" AS ", c.CondType, "),CAST(").P(sw.New).W(" AS ", c.SetType, ")")
			for j, a := range sw.Also {
				s.W(",CAST(").P(a).W(" AS ", c.AlsoTypes[j], ")")
			}
			s.W(")")
		}
		s.W(") AS v(", keyNames(n), ", ov, nv", alsoNames(len(c.Also)), ") WHERE ")
		t.joinKey(s, "t.")
		s.W(" AND t.", qc, " = v.ov RETURNING ", t.keyList("t."))
	case SQLite:
		s.W("UPDATE ", t.qt, " SET ", qs, " = v.nv")
		c.alsoSet(s, t.D, "")
		s.W(" FROM (SELECT ")
		for j := 0; j < n; j++ {
			s.W("column", strconv.Itoa(j+1), " AS k", strconv.Itoa(j), ", ")
		}
		s.W("column", strconv.Itoa(n+1), " AS ov, column", strconv.Itoa(n+2), " AS nv")
		for j := range c.Also {
			s.W(", column", strconv.Itoa(n+3+j), " AS a", strconv.Itoa(j))
		}
		s.W(" FROM (VALUES ")
		for i, sw := range swaps {
			if i > 0 {
				s.W(",")
			}
			s.W("(")
			for _, k := range sw.Key {
				s.P(k).W(",")
			}
			s.P(sw.Old).W(",").P(sw.New)
			for _, a := range sw.Also {
				s.W(",").P(a)
			}
			s.W(")")
		}
		s.W(")) AS v WHERE ")
		t.joinKey(s, t.qt+".")
		s.W(" AND ", t.qt, ".", qc, " = v.ov RETURNING ", t.keyList(""))
	case MySQL:
		open, close := "CAST(", " AS BINARY)"
		if !c.Binary {
			open, close = "", ""
		}
		s.W("UPDATE ", t.qt, " AS t JOIN (")
		for i, sw := range swaps {
			if i > 0 {
				s.W(" UNION ALL ")
			}
			s.W("SELECT ")
			for j, k := range sw.Key {
				s.P(k)
				if i == 0 {
					s.W(" AS k", strconv.Itoa(j))
				}
				s.W(", ")
			}
			s.W(open).P(sw.Old).W(close)
			if i == 0 {
				s.W(" AS ov")
			}
			s.W(", ", open).P(sw.New).W(close)
			if i == 0 {
				s.W(" AS nv")
			}
			for j, a := range sw.Also {
				s.W(", ").P(a)
				if i == 0 {
					s.W(" AS a", strconv.Itoa(j))
				}
			}
		}
		s.W(") AS v ON ")
		t.joinKey(s, "t.")
		s.W(" AND CAST(t.", qc, " AS BINARY) = CAST(v.ov AS BINARY) SET t.", qs, " = v.nv")
		c.alsoSet(s, t.D, "t.")
		res, err := q.ExecContext(ctx, s.String(), s.Args...)
		if err != nil {
			return nil, err
		}
		affected, err := res.RowsAffected()
		if err != nil {
			return nil, err
		}
		if int(affected) == len(swaps) {
			for _, sw := range swaps {
				applied[t.Text(sw.Key)] = true
			}
			return applied, nil
		}
		// Some rows changed under us: the rows now holding our new value
		// are the ones we swapped. (Should someone else have written the
		// very same bytes, the row holds the target value either way.)
		keys := make([][]any, len(swaps))
		want := make(map[string]string, len(swaps))
		for i, sw := range swaps {
			keys[i] = sw.Key
			want[t.Text(sw.Key)] = valueText(sw.New)
		}
		now, err := t.ReadKeys(ctx, q, []string{c.Set}, keys)
		if err != nil {
			return nil, err
		}
		for _, rw := range now {
			k := t.Text(rw.Key)
			if w, ok := want[k]; ok && w == valueText(rw.Vals[0]) {
				applied[k] = true
			}
		}
		return applied, nil
	}
	rows, err := q.QueryContext(ctx, s.String(), s.Args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		vals := make([]any, n)
		ptrs := make([]any, n)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		applied[t.Text(t.Norm(vals))] = true
	}
	return applied, rows.Err()
}

// SwapOne is Apply for one row, as a plain UPDATE ... WHERE key AND cond:
// it reports whether the row was changed.
func (t *Table) SwapOne(ctx context.Context, q Querier, c CAS, sw Swap) (bool, error) {
	s := t.buf()
	s.W("UPDATE ", t.qt, " SET ", t.D.Quote(c.Set), " = ").P(sw.New).W(" WHERE ")
	for j, k := range t.qk {
		s.W(k, " = ").P(sw.Key[j]).W(" AND ")
	}
	if t.D == MySQL { // compare bytes, not collation units
		s.W("CAST(", t.D.Quote(c.Cond), " AS BINARY) = CAST(").P(sw.Old).W(" AS BINARY)")
	} else {
		s.W(t.D.Quote(c.Cond), " = ").P(sw.Old)
	}
	res, err := q.ExecContext(ctx, s.String(), s.Args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *Table) joinKey(s *Buf, prefix string) {
	for j, k := range t.qk {
		if j > 0 {
			s.W(" AND ")
		}
		s.W(prefix, k, " = v.k", strconv.Itoa(j))
	}
}

// alsoNames is ", a0, a1, ..." for n CAS.Also columns.
func alsoNames(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(", a" + strconv.Itoa(i))
	}
	return b.String()
}

func keyNames(n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = "k" + strconv.Itoa(i)
	}
	return strings.Join(out, ", ")
}

// String returns a scanned value's text and whether it was not NULL.
func String(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case []byte:
		return string(x), true
	case string:
		return x, true
	}
	return fmt.Sprint(v), true
}

func valueText(v any) string {
	if s, ok := String(v); ok {
		return s
	}
	return "\x00nil"
}
