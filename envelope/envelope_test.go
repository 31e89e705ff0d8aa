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

// sealSuites are the suites Seal can write; the tests of randomized values
// run for each.
var sealSuites = []envelope.Suite{envelope.SuiteRandomizedDerivedWrap, envelope.SuiteRandomizedSIVWrap}

// forEachSealSuite runs f for each suite Seal can write, with a KeySource of
// its own and an Envelope that writes that suite.
func forEachSealSuite(t *testing.T, f func(t *testing.T, s envelope.Suite, keys *envelopetest.Keys, e *envelope.Envelope)) {
	for _, s := range sealSuites {
		t.Run(fmt.Sprintf("suite=0x%02x", uint8(s)), func(t *testing.T) {
			keys := envelopetest.New()
			f(t, s, keys, envelope.New(keys, envelope.WithSealSuite(s)))
		})
	}
}

func TestRoundTripSizes(t *testing.T) {
	forEachSealSuite(t, func(t *testing.T, s envelope.Suite, _ *envelopetest.Keys, e *envelope.Envelope) {
		testRoundTripSizes(t, s, e)
	})
}

func testRoundTripSizes(t *testing.T, s envelope.Suite, e *envelope.Envelope) {
	for _, n := range []int{0, 1, 15, 16, 17, 63, 64, 65, 1000, 4096, 65537, 1 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			pt := bytes.Repeat([]byte{byte(n)}, n)
			ct, err := e.Seal(ctx, patientSSN("42"), pt)
			require.NoError(t, err)
			assert.Equal(t, n+envelope.Overhead(s, 1), len(ct))
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
	forEachSealSuite(t, func(t *testing.T, s envelope.Suite, _ *envelopetest.Keys, e *envelope.Envelope) {
		a, err := e.Seal(ctx, patientSSN("1"), []byte("same"))
		require.NoError(t, err)
		b, err := e.Seal(ctx, patientSSN("1"), []byte("same"))
		require.NoError(t, err)
		// The header (6 bytes) and the wrapped DEK, then the data.
		data := envelope.Overhead(s, 1) - 16
		assert.NotEqual(t, a[6:data], b[6:data], "wrapped data keys must differ")
		assert.NotEqual(t, a[data:], b[data:], "data ciphertexts must differ")
	})
}

func TestEveryBitFlipAndTruncationIsRejected(t *testing.T) {
	forEachSealSuite(t, func(t *testing.T, _ envelope.Suite, _ *envelopetest.Keys, e *envelope.Envelope) {
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
	})
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
	forEachSealSuite(t, func(t *testing.T, s envelope.Suite, keys *envelopetest.Keys, e *envelope.Envelope) {
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
				assert.Equal(t, s, h1.Suite, "rewrap keeps the suite")
				assert.Equal(t, text, envelope.IsText(string(out)))

				rawIn, rawOut := ct, out
				if text {
					rawIn, _ = envelope.DecodeText(string(ct))
					rawOut, _ = envelope.DecodeText(string(out))
				}
				// 6-byte header (KEK versions below 128), the wrapped key, then data.
				dataStart := envelope.Overhead(s, 1) - 16
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
	})
}

func TestRewrappedHeaderCannotBePointedBack(t *testing.T) {
	forEachSealSuite(t, func(t *testing.T, _ envelope.Suite, keys *envelopetest.Keys, e *envelope.Envelope) {
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
	})
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

func TestSealWritesTheConfiguredSuite(t *testing.T) {
	e := envelope.New(envelopetest.New())
	ct, err := e.Seal(ctx, patientSSN("1"), []byte("v"))
	require.NoError(t, err)
	h, err := envelope.Inspect(ct)
	require.NoError(t, err)
	assert.Equal(t, envelope.DefaultSuite, h.Suite)
	assert.Equal(t, envelope.SuiteRandomizedDerivedWrap, envelope.DefaultSuite)
	for _, s := range []envelope.Suite{envelope.SuiteRandomized, envelope.SuiteRandomizedDerivedWrap, envelope.SuiteRandomizedSIVWrap} {
		assert.True(t, s.Randomized(), "%s", s)
	}
	assert.False(t, envelope.SuiteDeterministic.Randomized())
	assert.Equal(t, envelope.Overhead(envelope.SuiteRandomized, 1), envelope.Overhead(envelope.SuiteRandomizedDerivedWrap, 1))
	assert.Equal(t, 70, envelope.Overhead(envelope.SuiteRandomizedSIVWrap, 1), "8 bytes more: a 48-byte AES-SIV wrap")

	forEachSealSuite(t, func(t *testing.T, s envelope.Suite, keys *envelopetest.Keys, e *envelope.Envelope) {
		b := patientSSN("1")
		ct, err := e.Seal(ctx, b, []byte("v"))
		require.NoError(t, err)
		h, err := envelope.Inspect(ct)
		require.NoError(t, err)
		assert.Equal(t, s, h.Suite)
		assert.Len(t, ct, 1+envelope.Overhead(s, 1))
		// Reencrypt writes the configured suite whatever the input's, and
		// an Envelope of either suite opens both.
		other := envelope.SuiteRandomizedSIVWrap
		if s == other {
			other = envelope.SuiteRandomizedDerivedWrap
		}
		eo := envelope.New(keys, envelope.WithSealSuite(other))
		cto, err := eo.Seal(ctx, b, []byte("w"))
		require.NoError(t, err)
		re, err := e.Reencrypt(ctx, b, cto)
		require.NoError(t, err)
		h, err = envelope.Inspect(re)
		require.NoError(t, err)
		assert.Equal(t, s, h.Suite)
		for _, c := range [][]byte{ct, cto, re} {
			_, err := eo.Open(ctx, b, c)
			require.NoError(t, err)
			_, err = e.Open(ctx, b, c)
			require.NoError(t, err)
		}
	})

	for _, s := range []envelope.Suite{envelope.SuiteRandomized, envelope.SuiteDeterministic, 0x05} {
		_, err := envelope.New(envelopetest.New(), envelope.WithSealSuite(s)).Seal(ctx, patientSSN("1"), []byte("v"))
		require.ErrorIs(t, err, envelope.ErrInvalidInput, "Seal does not write suite %s", s)
	}
}

// swapSource serves keys from Keys, except the primary and the named KEK
// when set: a misbehaving key source.
type swapSource struct {
	*envelopetest.Keys
	primary, kek *envelope.KEK
}

func (s swapSource) PrimaryKEK(ctx context.Context, scope envelope.Scope) (*envelope.KEK, error) {
	if s.primary != nil {
		return s.primary, nil
	}
	return s.Keys.PrimaryKEK(ctx, scope)
}

func (s swapSource) KEK(ctx context.Context, ref envelope.KEKRef) (*envelope.KEK, error) {
	if s.kek != nil {
		return s.kek, nil
	}
	return s.Keys.KEK(ctx, ref)
}

func TestRewrapRefusesKEKsOfAnotherScope(t *testing.T) {
	keys := envelopetest.New()
	b := envelope.Binding{Class: envelope.High, Tenant: "acme", Table: "users", Column: "email", Row: "1"}
	ct, err := envelope.New(keys).Seal(ctx, b, []byte("a@example.com"))
	require.NoError(t, err)
	keys.Rotate(b.Scope())
	raw := bytes.Repeat([]byte{0x5A}, envelope.KEKSize)
	kek := func(c envelope.Class, tenant string, v uint32) *envelope.KEK {
		k, err := envelope.NewKEK(envelope.KEKRef{Class: c, Tenant: tenant, Version: v}, raw)
		require.NoError(t, err)
		return k
	}
	tests := []struct {
		name         string
		primary, old *envelope.KEK
	}{
		{"primary of another tenant", kek(envelope.High, "globex", 2), nil},
		{"primary of no tenant", kek(envelope.High, "", 2), nil},
		{"primary of another class", kek(envelope.Low, "acme", 2), nil},
		{"old KEK of another tenant", nil, kek(envelope.High, "globex", 1)},
		{"old KEK of another class", nil, kek(envelope.Critical, "acme", 1)},
		{"old KEK of another version", nil, kek(envelope.High, "acme", 3)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := envelope.New(swapSource{Keys: keys, primary: tc.primary, kek: tc.old}).Rewrap(ctx, b, ct)
			require.ErrorIs(t, err, envelope.ErrUnknownKey)
		})
	}
	out, err := envelope.New(keys).Rewrap(ctx, b, ct)
	require.NoError(t, err, "the honest key source still works")
	pt, err := envelope.New(keys).Open(ctx, b, out)
	require.NoError(t, err)
	assert.Equal(t, "a@example.com", string(pt))
}

func TestOperationsOnADestroyedKEKFail(t *testing.T) {
	keys := envelopetest.New()
	e := envelope.New(keys)
	b := patientSSN("3")
	ct, err := e.Seal(ctx, b, []byte("v"))
	require.NoError(t, err)
	primary, err := keys.PrimaryKEK(ctx, b.Scope())
	require.NoError(t, err)
	primary.Destroy()
	for name, op := range map[string]func() error{
		"seal":               func() error { _, err := e.Seal(ctx, b, []byte("v")); return err },
		"open":               func() error { _, err := e.Open(ctx, b, ct); return err },
		"rewrap":             func() error { _, err := e.Rewrap(ctx, b, ct); return err },
		"reencrypt":          func() error { _, err := e.Reencrypt(ctx, b, ct); return err },
		"seal-deterministic": func() error { _, err := e.SealDeterministic(ctx, b, []byte("v")); return err },
		"candidates":         func() error { _, err := e.DeterministicCandidates(ctx, b, []byte("v")); return err },
		"blind-index":        func() error { _, err := e.ComputeBlindIndex(ctx, b, envelope.BlindIndex{}, []byte("v")); return err },
		"blind-candidates": func() error {
			_, err := e.BlindIndexCandidates(ctx, b, envelope.BlindIndex{}, []byte("v"))
			return err
		},
	} {
		require.ErrorIs(t, op(), envelope.ErrKeyDestroyed, name)
	}
}

func TestNewKEKRefusesVersionZero(t *testing.T) {
	_, err := envelope.NewKEK(envelope.KEKRef{Class: envelope.High}, make([]byte, envelope.KEKSize))
	require.ErrorIs(t, err, envelope.ErrInvalidInput)
}

func TestDecodeTextAcceptsOnlyTheCanonicalForm(t *testing.T) {
	e := envelope.New(envelopetest.New())
	ct, err := e.Seal(ctx, patientSSN("1"), []byte("123-45-6789")) // 73 bytes: 1 byte in the last group
	require.NoError(t, err)
	txt := envelope.EncodeText(ct)
	body := txt[len(envelope.TextPrefix):]
	require.Equal(t, 2, len(body)%4, "the test wants a short last group")
	got, err := envelope.DecodeText(txt)
	require.NoError(t, err)
	require.Equal(t, ct, got)
	// The last character of a two-character group carries 4 zero bits
	// (A, Q, g or w); the next character of the alphabet sets one.
	last := body[len(body)-1]
	require.Contains(t, "AQgw", string(last))
	flipped := last + 1
	tests := map[string]string{
		"LF inside":              txt[:10] + "\n" + txt[10:],
		"CR LF inside":           txt[:10] + "\r\n" + txt[10:],
		"trailing LF":            txt + "\n",
		"CR after the prefix":    envelope.TextPrefix + "\r" + body,
		"padding":                txt + "==",
		"space":                  txt[:10] + " " + txt[10:],
		"URL alphabet":           envelope.TextPrefix + strings.NewReplacer("+", "-", "/", "_").Replace(body) + "-",
		"non-zero trailing bits": txt[:len(txt)-1] + string(flipped),
		"length 1 mod 4":         txt + "AAA",
		"NUL":                    txt + "\x00",
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := envelope.DecodeText(s)
			require.ErrorIs(t, err, envelope.ErrMalformed)
			_, err = e.Open(ctx, patientSSN("1"), []byte(s))
			require.ErrorIs(t, err, envelope.ErrMalformed)
		})
	}
}
