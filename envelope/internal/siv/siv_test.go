package siv

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	tink "github.com/tink-crypto/tink-go/v2/daead/subtle"

	"github.com/fieldcrypt/fieldcrypt/envelope/internal/testvec"
)

// seal and open are the allocating forms the tests compare with tink.
func seal(s *SIV, pt, ad []byte) []byte {
	out := make([]byte, Overhead+len(pt))
	s.Seal(out, pt, ad, make([]byte, ScratchSize))
	return out
}

func open(s *SIV, ct, ad []byte) ([]byte, error) {
	out := make([]byte, max(len(ct)-Overhead, 0))
	if err := s.Open(out, ct, ad, make([]byte, ScratchSize)); err != nil {
		return nil, err
	}
	return out, nil
}

// TestRFC5297 runs the deterministic example of RFC 5297 Appendix A.1
// (AES-SIV-CMAC-256, one associated-data component).
func TestRFC5297(t *testing.T) {
	s, err := New(testvec.Hex(t, "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"))
	require.NoError(t, err)
	ad := testvec.Hex(t, "101112131415161718191a1b1c1d1e1f2021222324252627")
	pt := testvec.Hex(t, "112233445566778899aabbccddee")
	want := testvec.Hex(t, "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c")
	assert.Equal(t, want, seal(s, pt, ad))
	back, err := open(s, want, ad)
	require.NoError(t, err)
	assert.Equal(t, pt, back)
}

// TestMatchesTink: with 64-byte keys, every plaintext length from 0 to 100
// and associated data of several lengths, the output is tink's byte for
// byte, each opens the other's, and both refuse the same tampering.
func TestMatchesTink(t *testing.T) {
	key := make([]byte, 64)
	rand.Read(key)
	ours, err := New(key)
	require.NoError(t, err)
	ref, err := tink.NewAESSIV(key)
	require.NoError(t, err)
	for _, adLen := range []int{0, 1, 15, 16, 17, 60} {
		for n := 0; n <= 100; n++ {
			pt, ad := make([]byte, n), make([]byte, adLen)
			rand.Read(pt)
			rand.Read(ad)
			want, err := ref.EncryptDeterministically(pt, ad)
			require.NoError(t, err)
			require.Equal(t, want, seal(ours, pt, ad), "plaintext %d bytes, ad %d bytes", n, adLen)
			back, err := open(ours, want, ad)
			require.NoError(t, err)
			require.Equal(t, pt, back)
			for _, i := range []int{0, 8, 15, len(want) - 1} {
				bad := bytes.Clone(want)
				bad[i] ^= 0x01
				_, refErr := ref.DecryptDeterministically(bad, ad)
				_, err := open(ours, bad, ad)
				require.Error(t, refErr)
				require.ErrorIs(t, err, ErrOpen)
			}
			_, err = open(ours, want, append(bytes.Clone(ad), 0))
			require.ErrorIs(t, err, ErrOpen, "other associated data")
		}
	}
}

func TestOpenFailureClearsOutput(t *testing.T) {
	s, err := New(make([]byte, 64))
	require.NoError(t, err)
	ct := seal(s, bytes.Repeat([]byte{9}, 32), nil)
	ct[0] ^= 1
	dst, scratch := make([]byte, 32), make([]byte, ScratchSize)
	require.ErrorIs(t, s.Open(dst, ct, nil, scratch), ErrOpen)
	assert.Equal(t, make([]byte, 32), dst)
	assert.Equal(t, make([]byte, ScratchSize), scratch)
	require.ErrorIs(t, s.Open(dst, ct[:Overhead-1], nil, scratch), ErrOpen)
	for _, n := range []int{0, 16, 33, 65} {
		_, err := New(make([]byte, n))
		assert.Error(t, err, "%d-byte key", n)
	}
}

func TestNoAllocations(t *testing.T) {
	s, err := New(make([]byte, 64))
	require.NoError(t, err)
	pt, ct, scratch := make([]byte, 64), make([]byte, 80), make([]byte, ScratchSize)
	var ad [40]byte
	var back [64]byte
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		s.Seal(ct, pt, ad[:], scratch)
		if err := s.Open(back[:], ct, ad[:], scratch); err != nil {
			t.Fatal(err)
		}
	}))
}

// FuzzDifferential: on any 64-byte key, plaintext and associated data,
// Seal agrees with tink's EncryptDeterministically, and Open with
// DecryptDeterministically on any input (same output, same accept or
// refuse).
func FuzzDifferential(f *testing.F) {
	f.Add(make([]byte, 64), []byte("value"), []byte("ad"))
	f.Add(bytes.Repeat([]byte{1}, 64), bytes.Repeat([]byte{2}, 48), []byte{})
	f.Fuzz(func(t *testing.T, key, data, ad []byte) {
		if len(key) < 64 {
			return
		}
		key = key[:64]
		ours, err := New(key)
		require.NoError(t, err)
		ref, err := tink.NewAESSIV(key)
		require.NoError(t, err)
		want, err := ref.EncryptDeterministically(data, ad)
		require.NoError(t, err)
		require.Equal(t, want, seal(ours, data, ad))
		wantPlain, refErr := ref.DecryptDeterministically(data, ad)
		gotPlain, err := open(ours, data, ad)
		require.Equal(t, refErr == nil, err == nil)
		if err == nil {
			require.Equal(t, wantPlain, gotPlain)
		}
	})
}

func BenchmarkSIV(b *testing.B) {
	key := make([]byte, 64)
	rand.Read(key)
	s, err := New(key)
	require.NoError(b, err)
	ref, err := tink.NewAESSIV(key)
	require.NoError(b, err)
	pt, ct, scratch := make([]byte, 64), make([]byte, 80), make([]byte, ScratchSize)
	ad := make([]byte, 48)
	var back [64]byte
	sealed := seal(s, pt, ad)
	b.Run("Seal/64B", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Seal(ct, pt, ad, scratch)
		}
	})
	b.Run("Open/64B", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = s.Open(back[:], sealed, ad, scratch)
		}
	})
	b.Run("tink/Seal/64B", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ref.EncryptDeterministically(pt, ad)
		}
	})
	b.Run("tink/Open/64B", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = ref.DecryptDeterministically(sealed, ad)
		}
	})
}

// TestWycheproof runs every AES-SIV-CMAC vector of Wycheproof
// (testvectors_v1/aes_siv_cmac_test.json: 256-, 384- and 512-bit keys, one
// associated-data component, valid and invalid ciphertexts) through Seal
// and Open, and the 512-bit ones through tink's AESSIV too.
func TestWycheproof(t *testing.T) {
	var groups []struct {
		Tests []struct {
			ID     int    `json:"tcId"`
			Key    string `json:"key"`
			AAD    string `json:"aad"`
			Msg    string `json:"msg"`
			CT     string `json:"ct"`
			Result string `json:"result"`
		} `json:"tests"`
	}
	testvec.Wycheproof(t, "aes_siv_cmac_test.json", &groups)
	valid, invalid := 0, 0
	for _, g := range groups {
		for _, tc := range g.Tests {
			key, ad, msg, ct := testvec.Hex(t, tc.Key), testvec.Hex(t, tc.AAD), testvec.Hex(t, tc.Msg), testvec.Hex(t, tc.CT)
			s, err := New(key)
			if err != nil {
				require.Equal(t, "invalid", tc.Result, "tcId %d: key refused", tc.ID)
				invalid++
				continue
			}
			got, err := open(s, ct, ad)
			if len(key) == 64 {
				ref, refErr := tink.NewAESSIV(key)
				require.NoError(t, refErr)
				want, refErr := ref.DecryptDeterministically(ct, ad)
				require.Equal(t, refErr == nil, err == nil, "tcId %d: open agrees with tink", tc.ID)
				if err == nil {
					require.Equal(t, want, got, "tcId %d", tc.ID)
				}
			}
			if tc.Result != "valid" {
				require.Error(t, err, "tcId %d (%s) opens", tc.ID, tc.Result)
				invalid++
				continue
			}
			require.NoError(t, err, "tcId %d", tc.ID)
			require.Equal(t, msg, got, "tcId %d", tc.ID)
			require.Equal(t, ct, seal(s, msg, ad), "tcId %d: seal", tc.ID)
			valid++
		}
	}
	t.Logf("%d valid vectors sealed and opened, %d invalid ones refused", valid, invalid)
	require.GreaterOrEqual(t, valid, 100)
}
