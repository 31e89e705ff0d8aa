package gormcrypt

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// errType reports a Go value that does not fit the field's type.
func (cf *cfield) errType(v interface{}) error {
	return fmt.Errorf("a %T cannot be stored in a %s field", v, cf.sf.FieldType)
}

// plainOf returns the plaintext encoding of v, a value for the field from a
// struct, a map or a condition. null is true for nil (stored as NULL).
func (cf *cfield) plainOf(v interface{}) (pt []byte, null bool, err error) {
	switch x := v.(type) {
	case nil:
		return nil, true, nil
	case string:
		if cf.kind == kString || cf.kind == kBytes {
			return []byte(x), false, nil
		}
	case *string:
		if cf.kind == kString {
			if x == nil {
				return nil, true, nil
			}
			return []byte(*x), false, nil
		}
	case []byte:
		if cf.kind == kBytes || cf.kind == kString {
			if x == nil {
				return nil, true, nil
			}
			return append([]byte(nil), x...), false, nil
		}
	case time.Time:
		if cf.kind == kTime {
			b, err := x.MarshalText()
			return b, false, err
		}
	case clause.Expr, clause.NamedExpr, *gorm.DB, clause.Column:
		return nil, false, fmt.Errorf("%w: an SQL expression cannot be encrypted; pass the value", ErrUnsupportedPath)
	case clause.Expression:
		return nil, false, fmt.Errorf("%w: an SQL expression cannot be encrypted; pass the value", ErrUnsupportedPath)
	}
	if cf.kind == kJSON {
		// A GORM serializer field yields a valuer producing its JSON.
		if dv, ok := v.(driver.Valuer); ok && reflect.TypeOf(v) != cf.base && reflect.TypeOf(v) != cf.sf.FieldType {
			jv, err := dv.Value()
			if err != nil {
				return nil, false, err
			}
			switch j := jv.(type) {
			case nil:
				return nil, true, nil
			case string:
				return []byte(j), false, nil
			case []byte:
				return append([]byte(nil), j...), false, nil
			}
		}
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Ptr {
		if rv.IsNil() {
			return nil, true, nil
		}
		rv = rv.Elem()
	}
	return cf.plainOfValue(rv, v)
}

// plainOfValue encodes a non-pointer reflect value.
func (cf *cfield) plainOfValue(rv reflect.Value, orig interface{}) ([]byte, bool, error) {
	switch cf.kind {
	case kString:
		if rv.Kind() == reflect.String {
			return []byte(rv.String()), false, nil
		}
	case kBytes:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			if rv.IsNil() {
				return nil, true, nil
			}
			return append([]byte(nil), rv.Bytes()...), false, nil
		}
		if rv.Kind() == reflect.String {
			return []byte(rv.String()), false, nil
		}
	case kInt, kUint:
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if cf.kind == kUint && rv.Int() < 0 {
				return nil, false, fmt.Errorf("negative value for an unsigned field")
			}
			return strconv.AppendInt(nil, rv.Int(), 10), false, nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			return strconv.AppendUint(nil, rv.Uint(), 10), false, nil
		}
	case kBool:
		if rv.Kind() == reflect.Bool {
			return strconv.AppendBool(nil, rv.Bool()), false, nil
		}
	case kFloat:
		switch rv.Kind() {
		case reflect.Float32, reflect.Float64:
			return strconv.AppendFloat(nil, rv.Float(), 'g', -1, 64), false, nil
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return strconv.AppendInt(nil, rv.Int(), 10), false, nil
		}
	case kTime:
		if rv.Type().ConvertibleTo(timeType) && rv.Kind() == reflect.Struct {
			b, err := rv.Convert(timeType).Interface().(time.Time).MarshalText()
			return b, false, err
		}
	case kJSON:
		switch rv.Kind() {
		case reflect.Map, reflect.Slice, reflect.Interface:
			if rv.IsNil() {
				return nil, true, nil
			}
		}
		b, err := json.Marshal(rv.Interface())
		return b, false, err
	}
	return nil, false, cf.errType(orig)
}

// decode turns a plaintext back into a value of the field's base type.
func (cf *cfield) decode(pt []byte) (reflect.Value, error) {
	var v reflect.Value
	switch cf.kind {
	case kString:
		v = reflect.ValueOf(string(pt))
	case kBytes:
		v = reflect.ValueOf(append([]byte{}, pt...))
	case kInt:
		n, err := strconv.ParseInt(string(pt), 10, 64)
		if err != nil {
			return v, fmt.Errorf("%w: decrypted value is not an integer", envelope.ErrMalformed)
		}
		v = reflect.New(cf.base).Elem()
		v.SetInt(n)
		return v, nil
	case kUint:
		n, err := strconv.ParseUint(string(pt), 10, 64)
		if err != nil {
			return v, fmt.Errorf("%w: decrypted value is not an unsigned integer", envelope.ErrMalformed)
		}
		v = reflect.New(cf.base).Elem()
		v.SetUint(n)
		return v, nil
	case kBool:
		b, err := strconv.ParseBool(string(pt))
		if err != nil {
			return v, fmt.Errorf("%w: decrypted value is not a bool", envelope.ErrMalformed)
		}
		v = reflect.New(cf.base).Elem()
		v.SetBool(b)
		return v, nil
	case kFloat:
		f, err := strconv.ParseFloat(string(pt), 64)
		if err != nil {
			return v, fmt.Errorf("%w: decrypted value is not a number", envelope.ErrMalformed)
		}
		v = reflect.New(cf.base).Elem()
		v.SetFloat(f)
		return v, nil
	case kTime:
		var t time.Time
		if err := t.UnmarshalText(pt); err != nil {
			return v, fmt.Errorf("%w: decrypted value is not a time", envelope.ErrMalformed)
		}
		v = reflect.ValueOf(t)
	case kJSON:
		p := reflect.New(cf.base)
		if err := json.Unmarshal(pt, p.Interface()); err != nil {
			return v, fmt.Errorf("%w: decrypted value is not valid JSON for %s", envelope.ErrMalformed, cf.base)
		}
		return p.Elem(), nil
	}
	if v.Type() != cf.base {
		v = v.Convert(cf.base)
	}
	return v, nil
}

// store sets the struct field fv (possibly a pointer) to val.
func (cf *cfield) store(fv reflect.Value, val reflect.Value) {
	if cf.ptr {
		p := reflect.New(cf.base)
		p.Elem().Set(val)
		fv.Set(p)
		return
	}
	fv.Set(val)
}

// encrypt seals a plaintext for row and returns the stored text. When the
// field has a blind index, it also returns its hex text.
func (cf *cfield) encrypt(ctx context.Context, row string, pt []byte) (ct string, bidx string, err error) {
	b := cf.binding(ctx, row)
	var raw []byte
	if cf.Mode == Deterministic {
		raw, err = cf.p.env.SealDeterministic(ctx, b, pt)
	} else {
		raw, err = cf.p.env.Seal(ctx, b, pt)
	}
	if err != nil {
		return "", "", cf.fail("encrypt", row, ErrEncrypt, err)
	}
	ct = envelope.EncodeText(raw)
	if cf.BlindIndex != "" {
		// The same function the reencrypt engine uses when it migrates a
		// column: the same bytes for the same value.
		if bidx, err = cf.p.env.ComputeBlindIndexText(ctx, b, cf.BlindIndexSpec, pt); err != nil {
			return "", "", cf.fail("encrypt", row, ErrEncrypt, err)
		}
	}
	return ct, bidx, nil
}

const hexDigits = "0123456789abcdef"

func hexString(b []byte) string {
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = hexDigits[c>>4], hexDigits[c&0x0f]
	}
	return string(out)
}

// encryptAny encodes and seals v (a field value from any source).
// It returns nil values for a NULL.
func (cf *cfield) encryptAny(ctx context.Context, row string, v interface{}) (ct, bidx interface{}, err error) {
	pt, null, err := cf.plainOf(v)
	if err != nil {
		if _, ok := err.(*Error); ok {
			return nil, nil, err
		}
		return nil, nil, cf.fail("encrypt", row, ErrEncrypt, err)
	}
	if null {
		return nil, nil, nil
	}
	c, b, err := cf.encrypt(ctx, row, pt)
	clear(pt)
	if err != nil {
		return nil, nil, err
	}
	if cf.BlindIndex != "" {
		return c, b, nil
	}
	return c, nil, nil
}

// set is the patched schema.Field.Set of an encrypted field: values GORM
// scanned from the database (*rawValue) are decrypted, anything else (an
// assignment from Updates with a map, a default) is set as is.
func (cf *cfield) set(ctx context.Context, rv reflect.Value, v interface{}) error {
	raw, ok := v.(*rawValue)
	if !ok {
		return cf.origSet(ctx, rv, v)
	}
	return cf.scanInto(ctx, rv, raw)
}

func (cf *cfield) scanInto(ctx context.Context, rv reflect.Value, raw *rawValue) error {
	fv := cf.sf.ReflectValueOf(ctx, rv)
	if raw.null {
		fv.Set(reflect.Zero(fv.Type()))
		return nil
	}
	if st := stateOf(ctx); st != nil && st.failed {
		// A value of this result already failed: the query fails, so the
		// rest is not decrypted (no key lookup, no KMS wait per value).
		fv.Set(reflect.Zero(fv.Type()))
		return nil
	}
	if raw.plain { // decrypted by the guard pool (Scan, ScanRows)
		val, err := cf.decode(raw.b)
		clear(raw.b)
		if err != nil {
			fv.Set(reflect.Zero(fv.Type()))
			return cf.failed(ctx, cf.fail("decrypt", cf.pl.rowOf(ctx, rv), ErrDecrypt, err))
		}
		cf.store(fv, val)
		return nil
	}
	if raw.other != nil || !envelope.IsText(string(raw.b[:min(len(raw.b), len(envelope.TextPrefix))])) {
		return cf.legacy(ctx, rv, fv, raw)
	}
	row := ""
	if rowBound(raw.b) {
		row = cf.pl.rowOf(ctx, rv)
		if row == "" {
			fv.Set(reflect.Zero(fv.Type()))
			if st := stateOf(ctx); st != nil && st.deferOK {
				if key := addrOf(rv); key != 0 {
					st.add(key, pendingItem{cf: cf, rv: rv, raw: append([]byte(nil), raw.b...)})
					return nil
				}
			}
			return cf.failed(ctx, cf.fail("decrypt", "", ErrDecrypt, fmt.Errorf("%w: the value is bound to its row but the primary key was not read before it (select the primary key)", ErrUnsupportedPath)))
		}
	}
	return cf.open(ctx, rv, fv, row, raw.b)
}

func (cf *cfield) open(ctx context.Context, rv, fv reflect.Value, row string, ct []byte) error {
	if err := cf.p.admitValue(ctx, cf); err != nil {
		fv.Set(reflect.Zero(fv.Type()))
		return cf.failed(ctx, err)
	}
	b := cf.binding(ctx, row)
	pt, err := cf.p.env.Open(ctx, b, ct)
	if cf.p.audit != nil {
		ab := b
		if ab.Row == "" { // not row-bound: the audit still says which row was read
			ab.Row = cf.pl.rowOf(ctx, rv)
		}
		cf.p.opened(ctx, ab, ct, err)
	}
	if err != nil {
		fv.Set(reflect.Zero(fv.Type()))
		if row == "" {
			row = cf.pl.rowOf(ctx, rv)
		}
		return cf.failed(ctx, cf.fail("decrypt", row, ErrDecrypt, err))
	}
	if cf.kind == kString && !cf.ptr && fv.Kind() == reflect.String {
		fv.SetString(string(pt))
		clear(pt)
		return nil
	}
	val, err := cf.decode(pt)
	clear(pt)
	if err != nil {
		fv.Set(reflect.Zero(fv.Type()))
		return cf.failed(ctx, cf.fail("decrypt", cf.pl.rowOf(ctx, rv), ErrDecrypt, err))
	}
	cf.store(fv, val)
	return nil
}

// failed records that a value of the current result failed (so the rest
// of the result is not decrypted) and returns err.
func (cf *cfield) failed(ctx context.Context, err error) error {
	if st := stateOf(ctx); st != nil {
		st.failed = true
	}
	return err
}

// legacy handles a value without the ciphertext prefix.
func (cf *cfield) legacy(ctx context.Context, rv, fv reflect.Value, raw *rawValue) error {
	if !cf.Migrate {
		fv.Set(reflect.Zero(fv.Type()))
		return cf.failed(ctx, &Error{Op: "decrypt", Model: cf.Model, Field: cf.Name, Table: cf.Table, Column: cf.Column,
			Row: cf.pl.rowOf(ctx, rv), Kind: ErrDecrypt, Err: ErrNotCiphertext})
	}
	if raw.other != nil {
		return cf.origSet(ctx, rv, raw.other)
	}
	switch cf.kind {
	case kString, kBytes, kJSON, kInt, kUint, kBool, kFloat:
		val, err := cf.decode(raw.b)
		if err != nil {
			return cf.failed(ctx, cf.fail("decrypt", cf.pl.rowOf(ctx, rv), ErrDecrypt, err))
		}
		cf.store(fv, val)
		return nil
	}
	return cf.origSet(ctx, rv, string(raw.b))
}

// state is the per-query scan state carried in the statement context.
type state struct {
	parent   context.Context
	deferOK  bool
	pending  map[uintptr][]pendingItem
	where    clause.Clause
	hadWhere bool
	schema   *schema.Schema // set aside for a map destination
	// addedSelect: the SELECT clause is gormcrypt's (see selectReadable).
	addedSelect bool
	// failed: a value failed to decrypt; the query fails as a whole.
	failed bool
}

type pendingItem struct {
	cf  *cfield
	rv  reflect.Value
	raw []byte
}

type stateKey struct{}

func stateOf(ctx context.Context) *state {
	if ctx == nil {
		return nil
	}
	st, _ := ctx.Value(stateKey{}).(*state)
	return st
}

func addrOf(rv reflect.Value) uintptr {
	if rv.Kind() == reflect.Ptr {
		return rv.Pointer()
	}
	if rv.CanAddr() {
		return rv.Addr().Pointer()
	}
	return 0
}

func (st *state) add(key uintptr, it pendingItem) {
	if st.pending == nil {
		st.pending = map[uintptr][]pendingItem{}
	}
	st.pending[key] = append(st.pending[key], it)
}

// flush decrypts the values of the struct rv that waited for its primary
// key (the key column came after them in the result).
func (st *state) flush(ctx context.Context, rv reflect.Value) error {
	key := addrOf(rv)
	items := st.pending[key]
	if len(items) == 0 {
		return nil
	}
	row := items[0].cf.pl.rowOf(ctx, rv)
	if row == "" {
		return nil // composite key not complete yet
	}
	delete(st.pending, key)
	var first error
	for _, it := range items {
		fv := it.cf.sf.ReflectValueOf(ctx, rv)
		if err := it.cf.open(ctx, rv, fv, row, it.raw); err != nil && first == nil {
			first = err
		}
	}
	return first
}
