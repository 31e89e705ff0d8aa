package envelope_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

type myID int64

func TestRowKey(t *testing.T) {
	u := uuid.MustParse("4F0C2A8E-2B9D-4C61-9A53-0B6F1D2E7C11")
	raw := [16]byte(u)
	s := "abc"
	n := int64(42)
	tests := []struct {
		in   any
		want string
	}{
		{nil, ""},
		{"abc", "abc"},
		{[]byte("abc"), "abc"},
		{42, "42"}, {int8(-4), "-4"}, {int32(42), "42"}, {n, "42"}, {uint16(7), "7"}, {uint64(1 << 40), "1099511627776"},
		{u, "4f0c2a8e-2b9d-4c61-9a53-0b6f1d2e7c11"},
		{raw, "4f0c2a8e-2b9d-4c61-9a53-0b6f1d2e7c11"},
		{&u, "4f0c2a8e-2b9d-4c61-9a53-0b6f1d2e7c11"},
		{&raw, "4f0c2a8e-2b9d-4c61-9a53-0b6f1d2e7c11"},
		{&s, "abc"}, {&n, "42"}, {(*int64)(nil), ""},
		{myID(9), "9"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, envelope.RowKey(tc.in), "%T %v", tc.in, tc.in)
	}
}
