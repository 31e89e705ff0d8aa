package gormcrypt

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// FuzzParseTag: the fieldcrypt tag parser never panics, every error wraps
// ErrTag and never echoes more than the tag itself, and an accepted tag
// describes a consistent field.
func FuzzParseTag(f *testing.F) {
	for _, s := range []string{
		"high", "critical,blindindex,unique", "high,deterministic", "low,deterministic,migrate",
		"critical,blindindex=size:8;argon2,unique", "moderate,blindindex=column:x_idx", "high,unbound",
		"public", "", ",", "high,,", "HIGH , Deterministic", "critical,blindindex=size:33", "x,y=z;w",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		fl, err := parseTag(tag)
		if err != nil {
			require.ErrorIs(t, err, ErrTag)
			return
		}
		require.True(t, fl.Class.Encrypted())
		require.False(t, fl.Mode == Deterministic && fl.BlindIndex != "", "deterministic with a blind index")
		require.False(t, fl.Unique && fl.BlindIndex == "", "unique without a blind index")
		if fl.BlindIndex != "" {
			require.GreaterOrEqual(t, fl.BlindIndexSpec.Size, 4)
			require.LessOrEqual(t, fl.BlindIndexSpec.Size, 32)
		}
	})
}

// FuzzDecodeStored: decoding a decrypted (or legacy) plaintext into each
// supported Go type never panics; a failure wraps envelope.ErrMalformed;
// a success converts back (through the field's encoding) to a value that
// decodes to the same thing.
func FuzzDecodeStored(f *testing.F) {
	type addr struct{ City string }
	kinds := []reflect.Type{
		reflect.TypeOf(""), reflect.TypeOf([]byte(nil)), reflect.TypeOf(int64(0)), reflect.TypeOf(int8(0)),
		reflect.TypeOf(uint16(0)), reflect.TypeOf(true), reflect.TypeOf(0.0), reflect.TypeOf(time.Time{}),
		reflect.TypeOf(addr{}), reflect.TypeOf([]string(nil)), reflect.TypeOf(map[string]int(nil)),
	}
	for _, s := range []string{"", "42", "-7", "true", "1.5e3", "2026-11-30T12:00:00Z", `{"City":"x"}`, `["a"]`, "\x00\xff", "999999999999999999999"} {
		for i := range kinds {
			f.Add(s, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, pt string, k uint8) {
		typ := kinds[int(k)%len(kinds)]
		cf := &cfield{base: typ, kind: kindOf(typ)}
		v, err := cf.decode([]byte(pt))
		if err != nil {
			require.True(t, errors.Is(err, envelope.ErrMalformed), "error %v does not wrap ErrMalformed", err)
			if len(pt) >= 8 {
				require.NotContains(t, err.Error(), pt, "an error quotes the value")
			}
			return
		}
		require.Equal(t, typ, v.Type())
		enc, null, err := cf.plainOfValue(v, v.Interface())
		require.NoError(t, err)
		if null {
			return
		}
		again, err := cf.decode(enc)
		require.NoError(t, err)
		if cf.kind == kFloat || cf.kind == kTime || cf.kind == kJSON {
			return // NaN, monotonic clocks and map order make equality too strict
		}
		require.Equal(t, v.Interface(), again.Interface())
	})
}
