package kwp

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	tink "github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/fieldcrypt/fieldcrypt/envelope/internal/testvec"
)

// wrap and unwrap are the allocating forms the tests compare with tink.
func wrap(k *KWP, src []byte) ([]byte, error) {
	if len(src) < MinWrapSize || len(src) > MaxWrapSize {
		return nil, ErrSize
	}
	out := make([]byte, WrappedLen(len(src)))
	return out, k.Wrap(out, src, make([]byte, ScratchSize))
}

func unwrap(k *KWP, src []byte) ([]byte, error) {
	out := make([]byte, max(len(src)-8, 0))
	n, err := k.Unwrap(out, src, make([]byte, ScratchSize))
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

// TestRFC5649 runs the example of RFC 5649 §6 that uses the W function
// (the other wraps 7 bytes, below MinWrapSize).
func TestRFC5649(t *testing.T) {
	k, err := New(testvec.Hex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"))
	require.NoError(t, err)
	key := testvec.Hex(t, "c37b7e6492584340bed12207808941155068f738")
	want := testvec.Hex(t, "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")
	got, err := wrap(k, key)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	back, err := unwrap(k, want)
	require.NoError(t, err)
	assert.Equal(t, key, back)
}

// TestMatchesTink: for AES-128 and AES-256 keys and every accepted length
// class, the output is tink's byte for byte, each unwraps the other's, and
// both refuse the same tampered inputs.
func TestMatchesTink(t *testing.T) {
	for _, keySize := range []int{16, 32} {
		for n := MinWrapSize; n <= 200; n++ {
			key, src := make([]byte, keySize), make([]byte, n)
			rand.Read(key)
			rand.Read(src)
			ours, err := New(key)
			require.NoError(t, err)
			ref, err := tink.NewKWP(key)
			require.NoError(t, err)
			want, err := ref.Wrap(src)
			require.NoError(t, err)
			got, err := wrap(ours, src)
			require.NoError(t, err)
			require.Equal(t, want, got, "key %d bytes, input %d bytes", keySize, n)
			back, err := unwrap(ours, want)
			require.NoError(t, err)
			require.Equal(t, src, back)
			for _, i := range []int{0, 4, 7, 8, len(want) - 1} {
				bad := bytes.Clone(want)
				bad[i] ^= 0x80
				_, refErr := ref.Unwrap(bad)
				_, err := unwrap(ours, bad)
				require.Error(t, refErr)
				require.ErrorIs(t, err, ErrIntegrity)
			}
		}
	}
}

func TestRefusesSizes(t *testing.T) {
	k, err := New(make([]byte, 32))
	require.NoError(t, err)
	for _, n := range []int{0, 1, 15, MaxWrapSize + 1} {
		_, err := wrap(k, make([]byte, n))
		assert.ErrorIs(t, err, ErrSize, "wrap %d bytes", n)
	}
	for _, n := range []int{0, 8, 16, 23, 25, 39, WrappedLen(MaxWrapSize) + 8} {
		_, err := unwrap(k, make([]byte, n))
		assert.ErrorIs(t, err, ErrSize, "unwrap %d bytes", n)
	}
	for _, n := range []int{15, 17, 33} {
		_, err := New(make([]byte, n))
		assert.Error(t, err, "%d-byte key", n)
	}
}

func TestFailureClearsOutput(t *testing.T) {
	k, err := New(make([]byte, 32))
	require.NoError(t, err)
	w, err := wrap(k, bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	w[len(w)-1] ^= 1
	dst, scratch := make([]byte, 32), make([]byte, ScratchSize)
	_, err = k.Unwrap(dst, w, scratch)
	require.ErrorIs(t, err, ErrIntegrity)
	assert.Equal(t, make([]byte, 32), dst)
	assert.Equal(t, make([]byte, ScratchSize), scratch)
}

func TestNoAllocations(t *testing.T) {
	k, err := New(make([]byte, 32))
	require.NoError(t, err)
	src, dst, scratch := make([]byte, 32), make([]byte, 40), make([]byte, ScratchSize)
	var back [32]byte
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		if err := k.Wrap(dst, src, scratch); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Unwrap(back[:], dst, scratch); err != nil {
			t.Fatal(err)
		}
	}))
}

// FuzzDifferential: on any key and input, Wrap agrees with tink's Wrap and
// Unwrap with tink's Unwrap (same output, same accept or refuse).
func FuzzDifferential(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Add(bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 40))
	f.Add(bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 17))
	f.Fuzz(func(t *testing.T, key, data []byte) {
		switch {
		case len(key) >= 32:
			key = key[:32]
		case len(key) >= 16:
			key = key[:16]
		default:
			return
		}
		ours, err := New(key)
		require.NoError(t, err)
		ref, err := tink.NewKWP(key)
		require.NoError(t, err)
		want, refErr := ref.Wrap(data)
		got, err := wrap(ours, data)
		require.Equal(t, refErr == nil, err == nil, "wrap of %d bytes", len(data))
		require.Equal(t, want, got)
		wantPlain, refErr := ref.Unwrap(data)
		gotPlain, err := unwrap(ours, data)
		require.Equal(t, refErr == nil, err == nil, "unwrap of %d bytes", len(data))
		require.Equal(t, wantPlain, gotPlain)
	})
}

func BenchmarkKWP(b *testing.B) {
	key := make([]byte, 32)
	rand.Read(key)
	k, err := New(key)
	require.NoError(b, err)
	ref, err := tink.NewKWP(key)
	require.NoError(b, err)
	src, dst, scratch := make([]byte, 32), make([]byte, 40), make([]byte, ScratchSize)
	var back [32]byte
	wrapped, _ := ref.Wrap(src)
	b.Run("Wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = k.Wrap(dst, src, scratch)
		}
	})
	b.Run("Unwrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = k.Unwrap(back[:], wrapped, scratch)
		}
	})
	b.Run("tink/Wrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ref.Wrap(src)
		}
	})
	b.Run("tink/Unwrap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ref.Unwrap(wrapped)
		}
	})
}

// TestWycheproof runs every AES-KWP vector of Wycheproof
// (testvectors_v1/aes_kwp_test.json: 128-, 192- and 256-bit keys, valid
// wraps and every kind of invalid one) through Wrap and Unwrap, and through
// tink's KWP where tink takes the key size. Wrapping fewer than 16 bytes is
// refused, as tink refuses it (MinWrapSize); unwrapping such a key is
// refused when its wrap is a single block (8 bytes or less), accepted
// otherwise, again as tink does.
func TestWycheproof(t *testing.T) {
	var groups []struct {
		Tests []struct {
			ID     int    `json:"tcId"`
			Key    string `json:"key"`
			Msg    string `json:"msg"`
			CT     string `json:"ct"`
			Result string `json:"result"`
		} `json:"tests"`
	}
	testvec.Wycheproof(t, "aes_kwp_test.json", &groups)
	n := 0
	for _, g := range groups {
		for _, tc := range g.Tests {
			key, msg, ct := testvec.Hex(t, tc.Key), testvec.Hex(t, tc.Msg), testvec.Hex(t, tc.CT)
			k, err := New(key)
			require.NoError(t, err, "tcId %d", tc.ID)
			var ref *tink.KWP
			if len(key) != 24 {
				ref, err = tink.NewKWP(key)
				require.NoError(t, err)
			}
			got, err := unwrap(k, ct)
			if ref != nil {
				want, refErr := ref.Unwrap(ct)
				require.Equal(t, refErr == nil, err == nil, "tcId %d: unwrap agrees with tink", tc.ID)
				require.Equal(t, want, got, "tcId %d", tc.ID)
			}
			switch {
			case tc.Result == "invalid":
				require.Error(t, err, "tcId %d (invalid) unwraps", tc.ID)
				continue
			case tc.Result != "valid":
				continue // "acceptable": agreeing with tink is the test
			case len(ct) < WrappedLen(MinWrapSize):
				// A key of 8 bytes or less is one AES block, not W: refused.
				require.ErrorIs(t, err, ErrSize, "tcId %d", tc.ID)
			default:
				require.NoError(t, err, "tcId %d", tc.ID)
				require.Equal(t, msg, got, "tcId %d", tc.ID)
			}
			w, err := wrap(k, msg)
			if len(msg) < MinWrapSize {
				require.ErrorIs(t, err, ErrSize, "tcId %d: wraps %d bytes", tc.ID, len(msg))
				continue
			}
			require.NoError(t, err)
			require.Equal(t, ct, w, "tcId %d: wrap", tc.ID)
			n++
		}
	}
	t.Logf("%d valid vectors wrapped and unwrapped", n)
	require.GreaterOrEqual(t, n, 30)
}
