// Package siv is AES-SIV (RFC 5297) with one associated-data component,
// without allocations: the construction of tink-go's daead/subtle AESSIV,
// which stays the reference (siv_test.go checks RFC 5297's example and, in
// FuzzDifferential, agreement with tink on any key, input and associated
// data).
//
// Why it exists: tink's AESSIV builds the CTR key schedule again and
// allocates about eight times on every call; here both AES keys are
// expanded once, CMAC(0^128) and the CMAC subkeys are computed once, and the
// caller passes the output and a scratch area in memory it already has, so
// sealing or opening allocates nothing.
package siv

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

const (
	// Overhead is the size of the synthetic IV that precedes the
	// ciphertext.
	Overhead = aes.BlockSize
	// ScratchSize is the size of the working memory Seal and Open need.
	ScratchSize = 2 * aes.BlockSize
)

// ErrOpen means a ciphertext did not authenticate.
var ErrOpen = errors.New("siv: ciphertext does not authenticate")

// SIV seals and opens under one AES-SIV key. It is safe for concurrent use.
type SIV struct {
	mac, ctr cipher.Block
	// k1, k2 are the CMAC subkeys (SP 800-38B) of the MAC key; d is
	// dbl(CMAC(0^128)), the S2V state before the associated data, and
	// dEmpty the state after an empty associated-data component (the key
	// wrap's case), d XOR CMAC("").
	k1, k2, d, dEmpty [aes.BlockSize]byte
}

// New returns an AES-SIV under key: 32, 48 or 64 bytes, whose first half
// keys S2V (CMAC) and second half CTR (RFC 5297 §2.2). tink uses 64.
func New(key []byte) (*SIV, error) {
	if len(key) != 32 && len(key) != 48 && len(key) != 64 {
		return nil, errors.New("siv: want a 32-, 48- or 64-byte key")
	}
	half := len(key) / 2
	mac, err := aes.NewCipher(key[:half])
	if err != nil {
		return nil, err
	}
	ctr, err := aes.NewCipher(key[half:])
	if err != nil {
		return nil, err
	}
	s := &SIV{mac: mac, ctr: ctr}
	var l [aes.BlockSize]byte
	mac.Encrypt(l[:], l[:])
	s.k1 = dbl(l)
	s.k2 = dbl(s.k1)
	var zero [aes.BlockSize]byte
	s.d = dbl(s.cmac(l[:], zero[:], nil))
	s.dEmpty = s.cmac(l[:], nil, nil)
	subtle.XORBytes(s.dEmpty[:], s.dEmpty[:], s.d[:])
	clear(l[:])
	return s, nil
}

// Clear zeroes the values derived from the MAC key that SIV holds (the
// expanded AES keys inside the standard library cannot be reached). The
// SIV must not be used afterwards.
func (s *SIV) Clear() {
	clear(s.k1[:])
	clear(s.k2[:])
	clear(s.d[:])
	clear(s.dEmpty[:])
}

// dbl multiplies by x in GF(2^128) (RFC 5297 §2.3).
func dbl(b [aes.BlockSize]byte) [aes.BlockSize]byte {
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	carry := hi >> 63
	hi, lo = hi<<1|lo>>63, lo<<1^(0x87&-carry)
	var out [aes.BlockSize]byte
	binary.BigEndian.PutUint64(out[:8], hi)
	binary.BigEndian.PutUint64(out[8:], lo)
	return out
}

// cmac returns CMAC(msg) with msg's last 16 bytes XORed with end when end
// is not nil (S2V's xorend; len(msg) >= 16 then). x is a 16-byte working
// block in heap memory: the block cipher takes it through an interface.
func (s *SIV) cmac(x, msg, end []byte) [aes.BlockSize]byte {
	clear(x)
	endAt := len(msg) - len(end)
	for off := 0; ; off += aes.BlockSize {
		last := len(msg)-off <= aes.BlockSize
		stop := min(off+aes.BlockSize, len(msg))
		subtle.XORBytes(x, x, msg[off:stop])
		if stop > endAt && len(end) > 0 {
			// The part of end that falls in this block.
			from := max(off, endAt)
			subtle.XORBytes(x[from-off:], x[from-off:stop-off], end[from-endAt:])
		}
		if last {
			if stop-off == aes.BlockSize {
				subtle.XORBytes(x, x, s.k1[:])
			} else {
				x[stop-off] ^= 0x80
				subtle.XORBytes(x, x, s.k2[:])
			}
			s.mac.Encrypt(x, x)
			var out [aes.BlockSize]byte
			copy(out[:], x)
			return out
		}
		s.mac.Encrypt(x, x)
	}
}

// s2v is S2V(ad, msg) with one associated-data component (RFC 5297 §2.4).
func (s *SIV) s2v(x, ad, msg []byte) [aes.BlockSize]byte {
	d := s.dEmpty
	if len(ad) > 0 {
		d = s.cmac(x, ad, nil)
		subtle.XORBytes(d[:], d[:], s.d[:])
	}
	if len(msg) >= aes.BlockSize {
		return s.cmac(x, msg, d[:])
	}
	t := dbl(d)
	subtle.XORBytes(t[:len(msg)], t[:len(msg)], msg)
	t[len(msg)] ^= 0x80
	return s.cmac(x, t[:], nil)
}

// xorCTR XORs src with the CTR keystream from iv (RFC 5297 §2.5: the IV
// with bits 63 and 31 cleared, then a 128-bit big-endian counter) into dst.
func (s *SIV) xorCTR(dst, src []byte, iv [aes.BlockSize]byte, ks []byte) {
	iv[8] &= 0x7f
	iv[12] &= 0x7f
	hi, lo := binary.BigEndian.Uint64(iv[:8]), binary.BigEndian.Uint64(iv[8:])
	for off := 0; off < len(src); off += aes.BlockSize {
		binary.BigEndian.PutUint64(ks[:8], hi)
		binary.BigEndian.PutUint64(ks[8:], lo)
		s.ctr.Encrypt(ks, ks)
		stop := min(off+aes.BlockSize, len(src))
		subtle.XORBytes(dst[off:stop], src[off:stop], ks)
		lo++
		if lo == 0 {
			hi++
		}
	}
}

// Seal writes SIV || CTR(plaintext) to dst[:Overhead+len(plaintext)].
// scratch is working memory of at least ScratchSize bytes in the heap; it
// is cleared before Seal returns. dst must not overlap plaintext, ad or
// scratch.
func (s *SIV) Seal(dst, plaintext, ad, scratch []byte) {
	x, ks := scratch[:aes.BlockSize], scratch[aes.BlockSize:ScratchSize]
	v := s.s2v(x, ad, plaintext)
	copy(dst[:Overhead], v[:])
	s.xorCTR(dst[Overhead:Overhead+len(plaintext)], plaintext, v, ks)
	clear(scratch[:ScratchSize])
}

// Open authenticates SIV || C and writes the plaintext to
// dst[:len(ciphertext)-Overhead]. On failure dst is cleared. scratch is as
// in Seal. dst must not overlap ciphertext, ad or scratch.
func (s *SIV) Open(dst, ciphertext, ad, scratch []byte) error {
	if len(ciphertext) < Overhead {
		return ErrOpen
	}
	x, ks := scratch[:aes.BlockSize], scratch[aes.BlockSize:ScratchSize]
	var v [aes.BlockSize]byte
	copy(v[:], ciphertext[:Overhead])
	pt := dst[:len(ciphertext)-Overhead]
	s.xorCTR(pt, ciphertext[Overhead:], v, ks)
	want := s.s2v(x, ad, pt)
	clear(scratch[:ScratchSize])
	if subtle.ConstantTimeCompare(want[:], v[:]) != 1 {
		clear(pt)
		return ErrOpen
	}
	return nil
}
