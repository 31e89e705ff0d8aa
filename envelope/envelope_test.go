package envelope_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
)

var ctx = context.Background()

func patientSSN(row string) envelope.Binding {
	return envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn", Row: row}
}

func TestRoundTripSizes(t *testing.T) {
	e := envelope.New(envelopetest.New())
	for _, n := range []int{0, 1, 15, 16, 17, 63, 64, 65, 1000, 4096, 65537, 1 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			pt := bytes.Repeat([]byte{byte(n)}, n)
			ct, err := e.Seal(ctx, patientSSN("42"), pt)
			require.NoError(t, err)
			assert.Equal(t, n+envelope.Overhead(envelope.SuiteRandomized, 1), len(ct))
			got, err := e.Open(ctx, patientSSN("42"), ct)
			require.NoError(t, err)
			assert.Equal(t, pt, got)
			// Text form.
			txt := envelope.EncodeText(ct)
			require.True(t, envelope.IsText(txt))
			got, err = e.Open(ctx, patientSSN("42"), []byte(txt))
			require.NoError(t, err)
			assert.Equal(t, pt, got)
		})
	}
}

func TestOverheadIsAtMost80Bytes(t *testing.T) {
	assert.Equal(t, 62, envelope.Overhead(envelope.SuiteRandomized, 1))
	assert.Equal(t, 63, envelope.Overhead(envelope.SuiteRandomized, 200))
	assert.Equal(t, 66, envelope.Overhead(envelope.SuiteRandomized, 1<<32-1))
	assert.Equal(t, 22, envelope.Overhead(envelope.SuiteDeterministic, 1))
}

func TestFreshDataKeyPerValue(t *testing.T) {
	e := envelope.New(envelopetest.New())
	a, err := e.Seal(ctx, patientSSN("1"), []byte("same"))
	require.NoError(t, err)
	b, err := e.Seal(ctx, patientSSN("1"), []byte("same"))
	require.NoError(t, err)
	// Header is 6 bytes; the wrapped DEK follows.
	assert.NotEqual(t, a[6:46], b[6:46], "wrapped data keys must differ")
	assert.NotEqual(t, a[46:], b[46:], "data ciphertexts must differ")
}

func TestEveryBitFlipAndTruncationIsRejected(t *testing.T) {
	e := envelope.New(envelopetest.New())
	ct, err := e.Seal(ctx, patientSSN("7"), []byte("123-45-6789"))
	require.NoError(t, err)
	for i := range ct {
		for bit := 0; bit < 8; bit++ {
			bad := bytes.Clone(ct)
			bad[i] ^= 1 << bit
			_, err := e.Open(ctx, patientSSN("7"), bad)
			require.Error(t, err, "flip byte %d bit %d accepted", i, bit)
			assert.True(t, errors.Is(err, envelope.ErrAuthentication) || errors.Is(err, envelope.ErrMalformed) ||
				errors.Is(err, envelope.ErrUnsupportedVersion) || errors.Is(err, envelope.ErrUnknownKey),
				"flip byte %d bit %d: unexpected error %v", i, bit, err)
		}
	}
	for n := 0; n < len(ct); n++ {
		_, err := e.Open(ctx, patientSSN("7"), ct[:n])
		require.Error(t, err, "truncation to %d bytes accepted", n)
	}
	// Appending bytes fails too.
	_, err = e.Open(ctx, patientSSN("7"), append(bytes.Clone(ct), 0))
	require.ErrorIs(t, err, envelope.ErrAuthentication)
}

func TestSwapsAreRejected(t *testing.T) {
	keys := envelopetest.New()
	e := envelope.New(keys)
	orig := envelope.Binding{Class: envelope.High, Tenant: "acme", Table: "users", Column: "email", Row: "1"}
	ct, err := e.Seal(ctx, orig, []byte("a@example.com"))
	require.NoError(t, err)
	// Give the other tenant a KEK with the same version so the failure is
	// authentication, not a missing key.
	_, err = e.Seal(ctx, envelope.Binding{Class: envelope.High, Tenant: "globex", Table: "users", Column: "email"}, nil)
	require.NoError(t, err)
	_, err = e.Seal(ctx, envelope.Binding{Class: envelope.Critical, Tenant: "acme", Table: "users", Column: "email"}, nil)
	require.NoError(t, err)

	tests := []struct {
		name string
		mut  func(b *envelope.Binding)
	}{
		{"other row", func(b *envelope.Binding) { b.Row = "2" }},
		{"no row", func(b *envelope.Binding) { b.Row = "" }},
		{"other column", func(b *envelope.Binding) { b.Column = "name" }},
		{"other table", func(b *envelope.Binding) { b.Table = "admins" }},
		{"other class", func(b *envelope.Binding) { b.Class = envelope.Critical }},
		{"other tenant", func(b *envelope.Binding) { b.Tenant = "globex" }},
		{"no tenant", func(b *envelope.Binding) { b.Tenant = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := orig
			tc.mut(&b)
			_, err := e.Open(ctx, b, ct)
			require.Error(t, err)
			assert.True(t, errors.Is(err, envelope.ErrAuthentication) || errors.Is(err, envelope.ErrUnknownKey), "%v", err)
		})
	}
	pt, err := e.Open(ctx, orig, ct)
	require.NoError(t, err)
	assert.Equal(t, "a@example.com", string(pt))
}

func TestUnboundRowIsRecorded(t *testing.T) {
	e := envelope.New(envelopetest.New())
	b := patientSSN("")
	ct, err := e.Seal(ctx, b, []byte("x"))
	require.NoError(t, err)
	h, err := envelope.Inspect(ct)
	require.NoError(t, err)
	assert.False(t, h.RowBound)
	// A reader that knows the row may pass it: an unbound value ignores it.
	b.Row = "99"
	pt, err := e.Open(ctx, b, ct)
	require.NoError(t, err)
	assert.Equal(t, "x", string(pt))
}

func TestRewrapKeepsDataBytesAndMovesKey(t *testing.T) {
	keys := envelopetest.New()
	e := envelope.New(keys)
	b := patientSSN("5")
	for _, text := range []bool{false, true} {
		t.Run(fmt.Sprintf("text=%v", text), func(t *testing.T) {
			ct, err := e.Seal(ctx, b, []byte("value"))
			require.NoError(t, err)
			h0, _ := envelope.Inspect(ct)
			if text {
				ct = []byte(envelope.EncodeText(ct))
			}
			v := keys.Rotate(b.Scope())
			out, err := e.Rewrap(ctx, b, ct)
			require.NoError(t, err)
			h1, err := envelope.Inspect(out)
			require.NoError(t, err)
			assert.Equal(t, v, h1.KEKVersion)
			assert.NotEqual(t, h0.KEKVersion, h1.KEKVersion)
			assert.Equal(t, text, envelope.IsText(string(out)))

			rawIn, rawOut := ct, out
			if text {
				rawIn, _ = envelope.DecodeText(string(ct))
				rawOut, _ = envelope.DecodeText(string(out))
			}
			// 6-byte header (KEK versions below 128), 40-byte wrapped key, then data.
			const dataStart = 6 + 40
			assert.Equal(t, rawIn[dataStart:], rawOut[dataStart:], "data ciphertext must be byte-identical")

			// Readable under the new KEK only: forget the old version.
			keys.Forget(envelope.KEKRef{Class: b.Class, Version: h0.KEKVersion})
			pt, err := e.Open(ctx, b, out)
			require.NoError(t, err)
			assert.Equal(t, "value", string(pt))
			_, err = e.Open(ctx, b, ct)
			require.ErrorIs(t, err, envelope.ErrUnknownKey)

			// Rewrapping what is already under the primary changes nothing.
			again, err := e.Rewrap(ctx, b, out)
			require.NoError(t, err)
			assert.Equal(t, out, again)
		})
	}
}

func TestRewrappedHeaderCannotBePointedBack(t *testing.T) {
	keys := envelopetest.New()
	e := envelope.New(keys)
	b := patientSSN("5")
	ct, err := e.Seal(ctx, b, []byte("value"))
	require.NoError(t, err)
	keys.Rotate(b.Scope())
	out, err := e.Rewrap(ctx, b, ct)
	require.NoError(t, err)
	bad := bytes.Clone(out)
	bad[5] = 1 // claim the old version
	_, err = e.Open(ctx, b, bad)
	require.ErrorIs(t, err, envelope.ErrAuthentication)
}

func TestReencryptUsesFreshKey(t *testing.T) {
	keys := envelopetest.New()
	e := envelope.New(keys)
	b := patientSSN("5")
	ct, err := e.Seal(ctx, b, []byte("value"))
	require.NoError(t, err)
	keys.Rotate(b.Scope())
	out, err := e.Reencrypt(ctx, b, ct)
	require.NoError(t, err)
	assert.NotEqual(t, ct[46:], out[46:])
	h, _ := envelope.Inspect(out)
	assert.Equal(t, uint32(2), h.KEKVersion)
	pt, err := e.Open(ctx, b, out)
	require.NoError(t, err)
	assert.Equal(t, "value", string(pt))
}

func TestErrorsNameWhereNotWhat(t *testing.T) {
	e := envelope.New(envelopetest.New())
	const canary = "CANARY-7f3a9-secret-value"
	b := patientSSN("row-17")
	ct, err := e.Seal(ctx, b, []byte(canary))
	require.NoError(t, err)
	bad := bytes.Clone(ct)
	bad[len(bad)-1] ^= 1
	_, err = e.Open(ctx, b, bad)
	require.ErrorIs(t, err, envelope.ErrAuthentication)
	msg := err.Error()
	assert.Contains(t, msg, "patients.ssn")
	assert.Contains(t, msg, "row-17")
	assert.Contains(t, msg, "critical/v1")
	assert.NotContains(t, msg, canary)
	assert.NotContains(t, msg, hex.EncodeToString(ct[6:46]))
	var fe *envelope.Error
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "open", fe.Op)
}

func TestBadInputsGiveSentinels(t *testing.T) {
	e := envelope.New(envelopetest.New())
	good, err := e.Seal(ctx, patientSSN("1"), []byte("v"))
	require.NoError(t, err)
	withVersion := func(v byte) []byte { b := bytes.Clone(good); b[1] = v; return b }
	withSuite := func(s byte) []byte { b := bytes.Clone(good); b[2] = s; return b }
	unknownVersion := bytes.Clone(good)
	unknownVersion[5] = 9
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, envelope.ErrMalformed},
		{"plaintext", []byte("hello world, not encrypted at all"), envelope.ErrMalformed},
		{"future format version", withVersion(2), envelope.ErrUnsupportedVersion},
		{"unknown suite", withSuite(9), envelope.ErrUnsupportedVersion},
		{"unknown KEK version", unknownVersion, envelope.ErrUnknownKey},
		{"bad text", []byte("fc1:!!!"), envelope.ErrMalformed},
		{"overlong varint", append(bytes.Clone(good[:5]), append([]byte{0x81, 0x00}, good[6:]...)...), envelope.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Open(ctx, patientSSN("1"), tc.in)
			require.ErrorIs(t, err, tc.want)
		})
	}
	_, err = e.Seal(ctx, envelope.Binding{Class: envelope.Public, Table: "t", Column: "c"}, nil)
	require.ErrorIs(t, err, envelope.ErrInvalidInput)
	_, err = e.Seal(ctx, envelope.Binding{Class: envelope.High, Column: "c"}, nil)
	require.ErrorIs(t, err, envelope.ErrInvalidInput)
}

func TestIsCiphertext(t *testing.T) {
	e := envelope.New(envelopetest.New())
	ct, err := e.Seal(ctx, patientSSN("1"), []byte("v"))
	require.NoError(t, err)
	assert.True(t, envelope.IsCiphertext(ct))
	assert.True(t, envelope.IsCiphertext([]byte(envelope.EncodeText(ct))))
	assert.False(t, envelope.IsCiphertext([]byte("123-45-6789")))
	assert.False(t, envelope.IsCiphertext(nil))
}

func TestKEKNeverPrintsKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xAB}, 32)
	k, err := envelope.NewKEK(envelope.KEKRef{Class: envelope.High, Version: 3}, raw)
	require.NoError(t, err)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %x", k, k, k, k, k)} {
		assert.NotContains(t, strings.ToLower(s), "abab")
		assert.Contains(t, s, "[REDACTED]")
	}
	k.Destroy()
	_, err = envelope.New(staticSource{k}).Open(ctx, patientSSN("1"), nil)
	require.Error(t, err)
}

type staticSource struct{ k *envelope.KEK }

func (s staticSource) PrimaryKEK(context.Context, envelope.Scope) (*envelope.KEK, error) {
	return s.k, nil
}
func (s staticSource) KEK(context.Context, envelope.KEKRef) (*envelope.KEK, error) { return s.k, nil }
func (s staticSource) SearchKEKs(context.Context, envelope.Scope) ([]*envelope.KEK, error) {
	return []*envelope.KEK{s.k}, nil
}

func TestKeySourceReturningWrongScopeIsRefused(t *testing.T) {
	k, err := envelope.NewKEK(envelope.KEKRef{Class: envelope.Low, Version: 1}, make([]byte, 32))
	require.NoError(t, err)
	e := envelope.New(staticSource{k})
	_, err = e.Seal(ctx, patientSSN("1"), []byte("v"))
	require.ErrorIs(t, err, envelope.ErrUnknownKey)
	_, err = e.SealDeterministic(ctx, patientSSN("1"), []byte("v"))
	require.ErrorIs(t, err, envelope.ErrUnknownKey)
}
