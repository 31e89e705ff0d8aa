package reencrypt

import (
	"encoding/hex"
	"fmt"
	"strconv"
)

// RowKey renders a primary key as the row key of envelope.Binding.Row, the
// same way package gormcrypt does: integers in decimal, strings as they
// are, UUIDs (a [16]byte such as uuid.UUID) in canonical lowercase
// 8-4-4-4-12 form. Other types with a String method use it.
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
	case *[16]byte:
		if v == nil {
			return ""
		}
		return formatUUID(*v)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(pk)
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
