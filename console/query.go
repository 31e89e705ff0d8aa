package console

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// quote quotes an identifier (validated by identRE) for the dialect.
func (c *Console) quote(name string) string {
	q := `"`
	if c.cfg.Dialect == "mysql" {
		q = "`"
	}
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = q + p + q
	}
	return strings.Join(parts, ".")
}

func (c *Console) placeholder(n int) string {
	if c.cfg.Dialect == "postgres" {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// where builds the condition: on a deterministic column its ciphertexts,
// on a blind-indexed one its blind indexes (under every live search key),
// on a column in clear the value.
func (c *Console) where(ctx context.Context, q Query, enc map[string]*Column) (string, []any, error) {
	w := q.Where
	if !identRE.MatchString(w.Column) {
		return "", nil, fmt.Errorf("%w: column name %q", ErrInvalidQuery, w.Column)
	}
	col := enc[strings.ToLower(w.Column)]
	if col == nil {
		return c.quote(w.Column) + " = " + c.placeholder(1), []any{w.Value}, nil
	}
	if c.env == nil {
		return "", nil, fmt.Errorf("%w: a search on an encrypted column needs a key source", ErrInvalidQuery)
	}
	tenant := col.Tenant
	if q.Tenant != "" {
		tenant = q.Tenant
	}
	b := envelope.Binding{Class: col.Class, Tenant: tenant, Table: col.Table, Column: col.Column}
	var terms [][]byte
	var target string
	var err error
	switch {
	case col.Deterministic:
		terms, err = c.env.DeterministicCandidates(ctx, b, []byte(w.Value))
		target = col.Column
	case col.BlindIndex != "":
		terms, err = c.env.BlindIndexCandidates(ctx, b, col.BlindIndexSpec, []byte(w.Value))
		target = col.BlindIndex
	default:
		return "", nil, fmt.Errorf("%w: %s.%s is encrypted without a blind index and not deterministic", ErrNotSearchable, col.Table, col.Column)
	}
	if err != nil {
		return "", nil, fmt.Errorf("console: search %s.%s: %w", col.Table, col.Column, err)
	}
	args := make([]any, len(terms))
	ph := make([]string, len(terms))
	for i, t := range terms {
		switch {
		case col.Deterministic && col.Binary:
			args[i] = t
		case col.Deterministic:
			args[i] = envelope.EncodeText(t)
		default:
			args[i] = fmt.Sprintf("%x", t)
		}
		ph[i] = c.placeholder(i + 1)
	}
	return c.quote(target) + " IN (" + strings.Join(ph, ", ") + ")", args, nil
}

// query runs q and converts its rows. reveal lists the columns whose
// ciphertexts are kept for reveal.
func (c *Console) query(ctx context.Context, q Query, reveal []*Column) (*Result, error) {
	if !identRE.MatchString(q.Table) {
		return nil, fmt.Errorf("%w: table name %q", ErrInvalidQuery, q.Table)
	}
	switch {
	case q.Limit == 0:
		q.Limit = 20
	case q.Limit < 0 || q.Limit > MaxLimit:
		return nil, fmt.Errorf("%w: limit %d (1 to %d)", ErrInvalidQuery, q.Limit, MaxLimit)
	}
	enc := c.columns(q.Table)
	sqlText := "SELECT * FROM " + c.quote(q.Table)
	var args []any
	if q.Where != nil {
		cond, a, err := c.where(ctx, q, enc)
		if err != nil {
			return nil, err
		}
		sqlText += " WHERE " + cond
		args = a
	}
	pk := ""
	for _, col := range enc {
		pk = col.PK
		break
	}
	if pk != "" {
		sqlText += " ORDER BY " + c.quote(pk)
	}
	sqlText += " LIMIT " + strconv.Itoa(q.Limit)
	rows, err := c.db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("console: read %s: %w", q.Table, err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	bidx := map[string]*Column{}
	for _, col := range enc {
		if col.BlindIndex != "" {
			bidx[strings.ToLower(col.BlindIndex)] = col
		}
	}
	keep := map[string]bool{}
	for _, col := range reveal {
		keep[strings.ToLower(col.Column)] = true
	}
	res := &Result{Table: q.Table, Columns: names, Rows: []Row{}}
	vals := make([]any, len(names))
	ptrs := make([]any, len(names))
	for rows.Next() {
		for i := range vals {
			vals[i] = nil
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("console: read %s: %w", q.Table, err)
		}
		row := Row{Cells: make([]Cell, len(names)), raw: map[string]any{}}
		for i, name := range names {
			lname := strings.ToLower(name)
			row.Cells[i] = cellOf(name, vals[i], enc[lname], bidx[lname])
			if keep[lname] || lname == strings.ToLower(pk) || c.isTenantColumn(enc, lname) {
				row.raw[lname] = vals[i]
			}
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("console: read %s: %w", q.Table, err)
	}
	return res, nil
}

func (c *Console) isTenantColumn(enc map[string]*Column, name string) bool {
	for _, col := range enc {
		if strings.EqualFold(col.TenantColumn, name) {
			return true
		}
	}
	return false
}

// cellOf turns a value as read into a cell: metadata for anything
// encrypted or in an encrypted column, the value otherwise.
func cellOf(name string, v any, enc, bidx *Column) Cell {
	cell := Cell{Column: name}
	if v == nil {
		cell.Null = true
		return cell
	}
	var b []byte
	switch x := v.(type) {
	case []byte:
		b = x
	case string:
		b = []byte(x)
	case time.Time:
		cell.Value = x.UTC().Format(time.RFC3339Nano)
		return cell
	default:
		cell.Value = fmt.Sprint(x)
		return cell
	}
	switch {
	case bidx != nil:
		size := len(b)
		if _, err := hex.DecodeString(string(b)); err == nil {
			size /= 2 // hex text, as gormcrypt writes it
		}
		cell.Meta = &Meta{BlindIndex: true, Class: bidx.Class.String(), Size: size}
	case enc != nil || envelope.IsCiphertext(b):
		cell.Meta = metaOf(b, enc)
	case utf8.Valid(b):
		cell.Value = string(b)
	default:
		cell.Value = fmt.Sprintf("[%d bytes, binary]", len(b))
	}
	return cell
}

// metaOf describes a stored value of an encrypted column from its header.
func metaOf(b []byte, enc *Column) *Meta {
	m := &Meta{}
	if enc != nil {
		m.Class = enc.Class.String()
	}
	if !envelope.IsCiphertext(b) {
		m.NotCiphertext, m.Size = true, len(b)
		return m
	}
	h, err := envelope.Inspect(b)
	if err != nil {
		m.Malformed = true
		return m
	}
	raw := len(b)
	if envelope.IsText(string(b[:min(len(b), len(envelope.TextPrefix))])) {
		raw = len(b) - len(envelope.TextPrefix)
		raw = raw * 6 / 8
	}
	m.Class, m.KEKVersion, m.RowBound = h.Class.String(), h.KEKVersion, h.RowBound
	m.Size = max(raw-envelope.Overhead(h.Suite, h.KEKVersion), 0)
	m.Deterministic = h.Suite == envelope.SuiteDeterministic
	return m
}

// reveal opens the reveal columns of every row, recording each value.
func (c *Console) reveal(ctx context.Context, q Query, res *Result, cols []*Column) error {
	var first error
	for ri := range res.Rows {
		row := &res.Rows[ri]
		for _, col := range cols {
			lname := strings.ToLower(col.Column)
			ci := res.column(lname)
			stored := row.raw[lname]
			if ci < 0 || stored == nil || row.Cells[ci].Meta == nil || row.Cells[ci].Meta.NotCiphertext || row.Cells[ci].Meta.Malformed {
				continue
			}
			if err := c.open(ctx, q, row, &row.Cells[ci], col, stored); err != nil {
				res.Failed++
				if first == nil {
					first = err
				}
				continue
			}
			res.Revealed++
		}
		row.raw = nil
	}
	return first
}

func (c *Console) open(ctx context.Context, q Query, row *Row, cell *Cell, col *Column, stored any) error {
	var ct []byte
	switch x := stored.(type) {
	case []byte:
		ct = x
	case string:
		ct = []byte(x)
	}
	pk := envelope.RowKey(row.raw[strings.ToLower(col.PK)])
	tenant := col.Tenant
	if q.Tenant != "" {
		tenant = q.Tenant
	}
	if col.TenantColumn != "" {
		tenant = envelope.RowKey(row.raw[strings.ToLower(col.TenantColumn)])
	}
	b := envelope.Binding{Class: col.Class, Tenant: tenant, Table: col.Table, Column: col.Column}
	if cell.Meta.RowBound {
		b.Row = pk
	}
	e := audit.Event{Type: audit.DecryptAccess, Class: col.Class.String(), Tenant: tenant, Table: col.Table, Column: col.Column,
		Row: pk, KEKVersion: cell.Meta.KEKVersion}
	pt, err := c.env.Open(ctx, b, ct)
	if err != nil {
		e.Type, e.Outcome, e.Error = audit.DecryptFailed, audit.Error, err.Error()
		c.cfg.Audit.Record(ctx, e)
		cell.Error = strings.TrimPrefix(err.Error(), "fieldcrypt: ")
		if errors.Is(err, envelope.ErrAuthentication) {
			cell.Error = "authentication failed"
		}
		return fmt.Errorf("console: reveal %s.%s row %s: %w", col.Table, col.Column, pk, err)
	}
	c.cfg.Audit.Record(ctx, e)
	cell.Value, cell.Revealed = string(pt), true
	clear(pt)
	return nil
}
