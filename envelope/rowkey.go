package envelope

import (
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"reflect"
	"strconv"
)

// RowKey renders a primary-key value as the Binding.Row string. Every
// fieldcrypt component that binds or opens row-bound values uses it, so the
// same key gives the same text whether it comes from a struct field, a map,
// or a database scan:
//
//   - integers of any size: decimal;
//   - strings and []byte: as they are;
//   - UUIDs, as uuid.UUID or as the raw [16]byte a driver returns:
//     canonical lower-case 8-4-4-4-12;
//   - fmt.Stringer and driver.Valuer types: their text / value;
//   - pointers: what they point to (nil: "").
func RowKey(pk any) string {
	switch v := pk.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	case int:
		return strconv.FormatInt(int64(v), 10)
	case int8:
		return strconv.FormatInt(int64(v), 10)
	case int16:
		return strconv.FormatInt(int64(v), 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint:
		return strconv.FormatUint(uint64(v), 10)
	case uint8:
		return strconv.FormatUint(uint64(v), 10)
	case uint16:
		return strconv.FormatUint(uint64(v), 10)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case [16]byte:
		return formatUUID(v)
	case fmt.Stringer:
		return v.String()
	case driver.Valuer:
		if dv, err := v.Value(); err == nil {
			return RowKey(dv)
		}
	}
	rv := reflect.ValueOf(pk)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return ""
		}
		rv = rv.Elem()
	}
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10)
	case reflect.String:
		return rv.String()
	case reflect.Array:
		if rv.Len() == 16 && rv.Type().Elem().Kind() == reflect.Uint8 {
			var u [16]byte
			reflect.Copy(reflect.ValueOf(u[:]), rv)
			return formatUUID(u)
		}
	}
	if rv.IsValid() && rv.CanInterface() && rv.Interface() != pk {
		return RowKey(rv.Interface())
	}
	return fmt.Sprint(pk)
}

// RowKeys renders a primary key of one or more columns as the Binding.Row
// string: one column is RowKey of its value; several are each rendered by
// RowKey, quoted (strconv.Quote) and joined by commas, so that no two
// different keys render alike. gormcrypt and reencrypt both bind rows with
// it.
func RowKeys(parts ...any) string {
	if len(parts) == 1 {
		return RowKey(parts[0])
	}
	var b []byte
	for i, p := range parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, RowKey(p))
	}
	return string(b)
}

func formatUUID(u [16]byte) string {
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	return string(buf[:])
}
