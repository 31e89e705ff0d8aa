// Package kwp is AES-KWP (NIST SP 800-38F §6.3, RFC 5649) without
// allocations: the same algorithm as tink-go's kwp/subtle, which stays the
// reference (kwp_test.go checks the two byte for byte on the RFC 5649 and
// envelope vectors, and FuzzDifferential against each other on any key and
// input).
//
// Why it exists: wrapping a 32-byte data key is 24 serial AES block calls,
// and tink's implementation also allocates its output and a 16-byte block
// buffer (which escapes through the cipher.Block interface) on every call.
// Here the caller passes the output and a scratch block that lives in
// memory it already has on the heap, so a wrap or unwrap allocates nothing.
//
// It accepts the sizes tink accepts (16 to 8192 bytes of key material), so
// anything one wraps the other unwraps.
package kwp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

const (
	// MinWrapSize and MaxWrapSize bound the key material Wrap accepts (as
	// tink-go's kwp/subtle does).
	MinWrapSize = 16
	MaxWrapSize = 8192
	// ScratchSize is the size of the scratch block Wrap and Unwrap need.
	ScratchSize = aes.BlockSize

	rounds = 6
	icv2   = 0xA65959A6 // SP 800-38F §6.3, the KWP integrity check value prefix
)

var (
	// ErrSize means the input length is outside what KWP accepts.
	ErrSize = errors.New("kwp: input size out of range")
	// ErrIntegrity means an unwrap failed the integrity check.
	ErrIntegrity = errors.New("kwp: unwrap failed integrity check")
)

// KWP wraps and unwraps keys under one AES key. It is safe for concurrent
// use.
type KWP struct {
	block cipher.Block
}

// New returns a KWP under an AES-128, AES-192 or AES-256 key (tink takes
// 16 or 32 bytes; 24 lets the tests run the RFC 5649 examples).
func New(key []byte) (*KWP, error) {
	if len(key) != 16 && len(key) != 24 && len(key) != 32 {
		return nil, errors.New("kwp: want a 16-, 24- or 32-byte key")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &KWP{block: b}, nil
}

// WrappedLen returns the size of the wrapping of n bytes: n rounded up to a
// multiple of 8, plus 8.
func WrappedLen(n int) int { return (n+7)&^7 + 8 }

// Wrap writes the wrapping of src to dst[:WrappedLen(len(src))]. scratch
// is working memory of at least ScratchSize bytes; it is cleared before
// Wrap returns. dst, src and scratch must not overlap.
func (k *KWP) Wrap(dst, src, scratch []byte) error {
	n := len(src)
	if n < MinWrapSize || n > MaxWrapSize {
		return ErrSize
	}
	out := dst[:WrappedLen(n)]
	buf := scratch[:ScratchSize]
	r := out[8:]
	copy(r, src)
	clear(r[n:])
	semis := len(r) / 8
	a := uint64(icv2)<<32 | uint64(n)
	var t uint64
	for range rounds {
		for i := 0; i < semis; i++ {
			ri := r[8*i : 8*i+8]
			binary.BigEndian.PutUint64(buf[:8], a)
			copy(buf[8:], ri)
			k.block.Encrypt(buf, buf)
			t++
			a = binary.BigEndian.Uint64(buf[:8]) ^ t
			copy(ri, buf[8:])
		}
	}
	binary.BigEndian.PutUint64(out[:8], a)
	clear(buf)
	return nil
}

// Unwrap unwraps src into dst[:len(src)-8] and returns the length of the
// key material, which is dst[:n]. On failure dst is cleared. scratch is
// working memory of at least ScratchSize bytes; it is cleared before Unwrap
// returns. dst, src and scratch must not overlap.
//
// The integrity check (the ICV, the encoded length and the zero padding) is
// evaluated in full, without branching on the recovered bytes.
func (k *KWP) Unwrap(dst, src, scratch []byte) (int, error) {
	if len(src) < WrappedLen(MinWrapSize) || len(src) > WrappedLen(MaxWrapSize) || len(src)%8 != 0 {
		return 0, ErrSize
	}
	r := dst[:len(src)-8]
	buf := scratch[:ScratchSize]
	copy(r, src[8:])
	semis := len(r) / 8
	a := binary.BigEndian.Uint64(src[:8])
	t := uint64(rounds * semis)
	for range rounds {
		for i := semis - 1; i >= 0; i-- {
			ri := r[8*i : 8*i+8]
			binary.BigEndian.PutUint64(buf[:8], a^t)
			copy(buf[8:], ri)
			k.block.Decrypt(buf, buf)
			t--
			a = binary.BigEndian.Uint64(buf[:8])
			copy(ri, buf[8:])
		}
	}
	clear(buf)
	hi, lo := uint32(a>>32), uint32(a)
	ok := subtle.ConstantTimeEq(int32(hi^icv2), 0)
	// The encoded length (below 2^16: MaxWrapSize is 8192) must round up
	// to exactly the recovered length.
	ok &= subtle.ConstantTimeEq(int32(lo>>16), 0)
	n := int(lo & 0xFFFF)
	ok &= subtle.ConstantTimeLessOrEq(len(r)-7, n) & subtle.ConstantTimeLessOrEq(n, len(r))
	var pad byte
	for i := len(r) - 7; i < len(r); i++ {
		// Bytes at or past n are padding and must be zero.
		pad |= r[i] & byte(subtle.ConstantTimeLessOrEq(n, i)*0xFF)
	}
	ok &= subtle.ConstantTimeByteEq(pad, 0)
	if ok != 1 {
		clear(r)
		return 0, ErrIntegrity
	}
	return n, nil
}
