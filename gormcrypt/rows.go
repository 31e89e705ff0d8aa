package gormcrypt

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Decrypting result rows.
//
// GORM hands some results to code gormcrypt cannot hook: rows scanned into
// a map, a scalar or a struct without tags (Pluck, Scan, Raw), and the
// *sql.Rows of Rows()/Row() that the caller scans by hand or with
// ScanRows. For those statements the guard pool reads the database's rows
// itself and serves them through a real *sql.Rows of its own (an
// in-process database/sql driver with no storage), decrypting every
// encrypted column of a registered table on the way: the caller's code,
// GORM's and database/sql's all see plaintext, never a ciphertext. A
// ciphertext in a column gormcrypt cannot attribute to one registered
// encrypted column (an alias, an unregistered table, a column encrypted in
// two joined tables) fails the rows with ErrUnsupportedPath, and so does a
// row-bound value whose primary key the result does not hold.
//
// Decrypted values travel as the marker types below: each converts, the
// way database/sql converts values, into the destinations that make sense
// for it (*string, *int, *time.Time, *any, ...), converts to a plain Go
// value through driver.Valuer (maps built by GORM), and is recognised by
// a model's own scanner, which then does not mistake it for legacy
// plaintext.

type (
	plainString string
	plainBytes  []byte
	plainInt    int64
	plainUint   uint64
	plainFloat  float64
	plainBool   int64 // an integer kind, so database/sql converts it to *bool
	plainTime   time.Time
	plainJSON   string
)

func (v plainString) Value() (driver.Value, error) { return string(v), nil }
func (v plainBytes) Value() (driver.Value, error)  { return []byte(v), nil }
func (v plainInt) Value() (driver.Value, error)    { return int64(v), nil }
func (v plainUint) Value() (driver.Value, error)   { return uint64(v), nil }
func (v plainFloat) Value() (driver.Value, error)  { return float64(v), nil }
func (v plainBool) Value() (driver.Value, error)   { return v != 0, nil }
func (v plainTime) Value() (driver.Value, error)   { return time.Time(v), nil }
func (v plainJSON) Value() (driver.Value, error)   { return string(v), nil }

// String gives the text database/sql uses to convert a marker into a
// string or number destination.
func (v plainBool) String() string { return strconv.FormatBool(v != 0) }

// plaintextOf returns the plaintext encoding (as plainOf produces it) of
// a marker value, and whether v is one.
func plaintextOf(v any) ([]byte, bool) {
	switch x := v.(type) {
	case plainString:
		return []byte(x), true
	case plainBytes:
		return append([]byte(nil), x...), true
	case plainInt:
		return strconv.AppendInt(nil, int64(x), 10), true
	case plainUint:
		return strconv.AppendUint(nil, uint64(x), 10), true
	case plainFloat:
		return strconv.AppendFloat(nil, float64(x), 'g', -1, 64), true
	case plainBool:
		return strconv.AppendBool(nil, x != 0), true
	case plainTime:
		b, err := time.Time(x).MarshalText()
		return b, err == nil
	case plainJSON:
		return []byte(x), true
	}
	return nil, false
}

// marker turns a decrypted plaintext of cf into its marker value.
func (cf *cfield) marker(pt []byte) (driver.Value, error) {
	switch cf.kind {
	case kString:
		return plainString(pt), nil
	case kBytes:
		return plainBytes(append([]byte{}, pt...)), nil
	case kJSON:
		return plainJSON(pt), nil
	case kInt:
		n, err := strconv.ParseInt(string(pt), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: decrypted value is not an integer", envelope.ErrMalformed)
		}
		return plainInt(n), nil
	case kUint:
		n, err := strconv.ParseUint(string(pt), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: decrypted value is not an unsigned integer", envelope.ErrMalformed)
		}
		return plainUint(n), nil
	case kFloat:
		f, err := strconv.ParseFloat(string(pt), 64)
		if err != nil {
			return nil, fmt.Errorf("%w: decrypted value is not a number", envelope.ErrMalformed)
		}
		return plainFloat(f), nil
	case kBool:
		b, err := strconv.ParseBool(string(pt))
		if err != nil {
			return nil, fmt.Errorf("%w: decrypted value is not a bool", envelope.ErrMalformed)
		}
		if b {
			return plainBool(1), nil
		}
		return plainBool(0), nil
	case kTime:
		var t time.Time
		if err := t.UnmarshalText(pt); err != nil {
			return nil, fmt.Errorf("%w: decrypted value is not a time", envelope.ErrMalformed)
		}
		return plainTime(t), nil
	}
	return nil, fmt.Errorf("%w: unknown field kind", envelope.ErrMalformed)
}

// goValue converts a marker read for cf into a value of the field's Go
// type (for map destinations, like a model read gives them).
func (cf *cfield) goValue(v any) any {
	pt, ok := plaintextOf(v)
	if !ok {
		return v
	}
	rv, err := cf.decode(pt)
	clear(pt)
	if err != nil {
		return v
	}
	return rv.Interface()
}

// fromStd converts a value read into a map for cf (a decrypted value as
// its marker's driver.Valuer gave it, or legacy plaintext of a migrate
// field) into a value of the field's Go type. A value it cannot convert is
// returned as read.
func (cf *cfield) fromStd(v any) any {
	if v == nil {
		return nil
	}
	if pt, ok := plaintextOf(v); ok {
		return cf.goValue(plainBytes(pt))
	}
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	}
	if b != nil {
		if envelope.IsText(string(b[:min(len(b), len(envelope.TextPrefix))])) {
			return v // never decoded as a value: checkDest refuses it
		}
		if rv, err := cf.decode(b); err == nil {
			return rv.Interface()
		}
		return v
	}
	rv := reflect.ValueOf(v)
	if rv.Type().ConvertibleTo(cf.base) && rv.Kind() != reflect.String && cf.base.Kind() != reflect.String {
		return rv.Convert(cf.base).Interface()
	}
	return v
}

// fakeQuery is the query text of the in-process driver (never parsed).
const fakeQuery = "gormcrypt: decrypted rows"

// handoff carries the database's rows to the in-process driver.
type handoff struct {
	rows *sql.Rows
	err  error
	dec  *rowDecryptor
}

func (p *Plugin) newHandoff(ctx context.Context, rows *sql.Rows, tables []*tableEntry, lenient bool) *handoff {
	cols, err := rows.Columns()
	if err != nil {
		rows.Close()
		return &handoff{err: err}
	}
	types, _ := rows.ColumnTypes()
	d := newRowDecryptor(ctx, p, tables, cols, types)
	d.lenient = lenient
	// The result's columns are known: refuse before any row is read if one
	// of them may not be decrypted in ctx.
	if err := p.admit(ctx, d.fields); err != nil {
		rows.Close()
		return &handoff{err: err}
	}
	return &handoff{rows: rows, dec: d}
}

// decryptRows serves rows through the in-process driver, decrypted.
func (p *Plugin) decryptRows(ctx context.Context, rows *sql.Rows, tables []*tableEntry, lenient bool) (*sql.Rows, error) {
	h := p.newHandoff(ctx, rows, tables, lenient)
	if h.err != nil {
		return nil, h.err
	}
	out, err := p.fake.QueryContext(ctx, fakeQuery, h)
	if err != nil {
		rows.Close()
		return nil, err
	}
	return out, nil
}

// rowDecryptor decrypts one result's rows.
type rowDecryptor struct {
	p      *Plugin
	ctx    context.Context
	cols   []string
	types  []*sql.ColumnType
	fields []*cfield // per column: the encrypted field, or nil
	amb    []string  // per column: non-empty when two registered tables encrypt it
	pkIdx  map[*tableEntry][]int
	// lenient: a value without the ciphertext prefix is returned as
	// stored (raw SQL, whose columns may come from other tables).
	lenient bool
}

func newRowDecryptor(ctx context.Context, p *Plugin, tables []*tableEntry, cols []string, types []*sql.ColumnType) *rowDecryptor {
	d := &rowDecryptor{p: p, ctx: ctx, cols: cols, types: types, fields: make([]*cfield, len(cols)), amb: make([]string, len(cols)), pkIdx: map[*tableEntry][]int{}}
	for i, c := range cols {
		name := strings.ToLower(c)
		var owners []string
		for _, t := range tables {
			if cf := t.cols[name]; cf != nil {
				if d.fields[i] == nil {
					d.fields[i] = cf
				}
				owners = append(owners, t.name)
			}
		}
		if len(owners) > 1 {
			d.amb[i] = strings.Join(owners, " and ")
		}
	}
	for _, t := range tables {
		idx := make([]int, len(t.pks))
		for k, pk := range t.pks {
			idx[k] = -1
			for i, c := range cols {
				if strings.EqualFold(c, pk) {
					if idx[k] >= 0 { // the key column appears twice (a join): unknown
						idx[k] = -2
						break
					}
					idx[k] = i
				}
			}
		}
		d.pkIdx[t] = idx
	}
	return d
}

// row decrypts vals in place.
func (d *rowDecryptor) row(vals []driver.Value) error {
	for i, v := range vals {
		cf := d.fields[i]
		if cf == nil {
			if looksEncrypted(v) {
				return fmt.Errorf("%w: result column %q holds a ciphertext that gormcrypt cannot attribute to an encrypted column of a registered table (an alias, or a model not registered with gormcrypt.Register); select it through the model", ErrUnsupportedPath, d.cols[i])
			}
			continue
		}
		if v == nil {
			continue
		}
		if d.amb[i] != "" && looksEncrypted(v) {
			return cf.fail("decrypt", "", ErrDecrypt, fmt.Errorf("%w: column %q is encrypted in both %s; select it through one model", ErrUnsupportedPath, d.cols[i], d.amb[i]))
		}
		if d.lenient && !looksEncrypted(v) {
			continue
		}
		row, haveRow := d.rowKey(cf, vals)
		out, err := cf.openValue(d.ctx, row, haveRow, v)
		if err != nil {
			return err
		}
		vals[i] = out
	}
	return nil
}

// rowKey returns the primary key of cf's table in this row.
func (d *rowDecryptor) rowKey(cf *cfield, vals []driver.Value) (string, bool) {
	t := d.p.reg.get(cf.Table)
	idx := d.pkIdx[t]
	if t == nil || len(idx) == 0 {
		return "", false
	}
	row := make([]any, len(idx))
	for k, i := range idx {
		if i < 0 {
			return "", false
		}
		row[k] = vals[i]
	}
	pos := make([]int, len(idx))
	for k := range pos {
		pos[k] = k
	}
	key := rowKeyOf(row, pos)
	return key, key != ""
}

// openValue decrypts a stored value found in a result row and returns its
// marker (legacy plaintext of a migrate field is returned as stored).
func (cf *cfield) openValue(ctx context.Context, row string, haveRow bool, stored any) (driver.Value, error) {
	var b []byte
	switch x := stored.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		if cf.Migrate {
			return stored, nil
		}
		return nil, cf.fail("decrypt", row, ErrDecrypt, ErrNotCiphertext)
	}
	if !envelope.IsText(string(b[:min(len(b), len(envelope.TextPrefix))])) {
		if cf.Migrate {
			return stored, nil
		}
		return nil, cf.fail("decrypt", row, ErrDecrypt, ErrNotCiphertext)
	}
	bound := rowBound(b)
	if bound && !haveRow {
		return nil, cf.fail("decrypt", "", ErrDecrypt, fmt.Errorf("%w: the value is bound to its row; select the primary key too", ErrUnsupportedPath))
	}
	bindRow := ""
	if bound {
		bindRow = row
	}
	if err := cf.p.admitValue(ctx, cf); err != nil {
		return nil, err
	}
	bind := cf.binding(ctx, bindRow)
	pt, err := cf.p.env.Open(ctx, bind, b)
	if cf.p.audit != nil {
		ab := bind
		if ab.Row == "" && haveRow {
			ab.Row = row
		}
		cf.p.opened(ctx, ab, b, err)
	}
	if err != nil {
		return nil, cf.fail("decrypt", row, ErrDecrypt, err)
	}
	out, err := cf.marker(pt)
	clear(pt)
	if err != nil {
		return nil, cf.fail("decrypt", row, ErrDecrypt, err)
	}
	return out, nil
}

// looksEncrypted reports whether a result value is a fieldcrypt text
// ciphertext.
func looksEncrypted(v any) bool {
	switch x := v.(type) {
	case string:
		return envelope.IsText(x)
	case []byte:
		return len(x) >= len(envelope.TextPrefix) && string(x[:len(envelope.TextPrefix)]) == envelope.TextPrefix
	}
	return false
}

// The in-process driver. It has no storage: each query hands it the
// database's rows (a *handoff argument) and it returns them decrypted.

type fakeConnector struct{}

func (fakeConnector) Connect(context.Context) (driver.Conn, error) { return fakeConn{}, nil }
func (fakeConnector) Driver() driver.Driver                        { return fakeDriver{} }

type fakeDriver struct{}

func (fakeDriver) Open(string) (driver.Conn, error) { return fakeConn{}, nil }

type fakeConn struct{}

var errFakeConn = errors.New("gormcrypt: the decrypted-rows connection only serves rows")

func (fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errFakeConn }
func (fakeConn) Close() error                        { return nil }
func (fakeConn) Begin() (driver.Tx, error)           { return nil, errFakeConn }

// CheckNamedValue accepts the handoff as an argument.
func (fakeConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (fakeConn) QueryContext(_ context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) != 1 {
		return nil, errFakeConn
	}
	h, ok := args[0].Value.(*handoff)
	if !ok {
		return nil, errFakeConn
	}
	if h.err != nil {
		return nil, h.err
	}
	return &decRows{h: h, buf: make([]any, len(h.dec.cols)), ptrs: make([]any, len(h.dec.cols))}, nil
}

// decRows is the driver.Rows of a decrypted result.
type decRows struct {
	h    *handoff
	buf  []any
	ptrs []any
	err  error // sticky: the first failure ends the result
}

func (r *decRows) Columns() []string { return r.h.dec.cols }
func (r *decRows) Close() error      { return r.h.rows.Close() }

func (r *decRows) Next(dest []driver.Value) error {
	if r.err != nil {
		return r.err
	}
	rows := r.h.rows
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			r.err = err
			return err
		}
		return io.EOF
	}
	for i := range r.buf {
		r.buf[i] = nil
		r.ptrs[i] = &r.buf[i]
	}
	if err := rows.Scan(r.ptrs...); err != nil {
		r.err = err
		return err
	}
	for i := range dest {
		dest[i] = r.buf[i]
	}
	if err := r.h.dec.row(dest); err != nil {
		clear(dest)
		r.err = err
		return err
	}
	return nil
}

var anyType = reflect.TypeOf((*any)(nil)).Elem()

func (r *decRows) colType(i int) *sql.ColumnType {
	if i < len(r.h.dec.types) {
		return r.h.dec.types[i]
	}
	return nil
}

// ColumnTypeScanType: encrypted columns scan into any (their markers),
// others as the database's driver says.
func (r *decRows) ColumnTypeScanType(i int) reflect.Type {
	if r.h.dec.fields[i] != nil {
		return anyType
	}
	if ct := r.colType(i); ct != nil && ct.ScanType() != nil {
		return ct.ScanType()
	}
	return anyType
}

func (r *decRows) ColumnTypeDatabaseTypeName(i int) string {
	if ct := r.colType(i); ct != nil {
		return ct.DatabaseTypeName()
	}
	return ""
}

func (r *decRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if ct := r.colType(i); ct != nil {
		return ct.Nullable()
	}
	return false, false
}

func (r *decRows) ColumnTypeLength(i int) (int64, bool) {
	if r.h.dec.fields[i] != nil {
		return 0, false
	}
	if ct := r.colType(i); ct != nil {
		return ct.Length()
	}
	return 0, false
}

func (r *decRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if ct := r.colType(i); ct != nil {
		return ct.DecimalSize()
	}
	return 0, 0, false
}
