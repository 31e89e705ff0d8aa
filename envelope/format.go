package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
)

// Format constants. See docs/format.md for the byte layout.
const (
	magic         = 0xFC
	formatVersion = 0x01

	// TextPrefix starts the text encoding of every format-1 ciphertext.
	TextPrefix = "fc1:"

	// dekSize is the size of a data key (AES-256).
	dekSize = 32
	// wrappedDEKSize is the size of an AES-KWP-wrapped 32-byte DEK
	// (suites 0x01 and 0x03).
	wrappedDEKSize = 40
	// sivWrappedDEKSize is the size of an AES-SIV-wrapped 32-byte DEK
	// (suite 0x04): the 16-byte synthetic IV, then the 32 encrypted bytes.
	sivWrappedDEKSize = 48
	// tagSize is the AES-GCM tag size.
	tagSize = 16
	// sivSize is the size of the AES-SIV synthetic IV.
	sivSize = 16
	// fixedHeaderSize covers magic, version, suite, flags and class; the
	// KEK version follows as an unsigned varint of 1 to 5 bytes.
	fixedHeaderSize = 5
	maxHeaderSize   = fixedHeaderSize + binary.MaxVarintLen32
)

// Suite identifies the algorithms of a ciphertext. Its numeric value is
// recorded in the header and never reused for another construction.
type Suite uint8

const (
	// SuiteRandomized: a fresh random DEK per value; the value is sealed
	// with AES-256-GCM under the DEK (zero nonce: each DEK seals exactly one
	// message); the DEK is wrapped with AES-256-KWP (NIST SP 800-38F) under
	// the KEK itself. Written by earlier builds; still read and rewrapped
	// (a rewrapped 0x01 value stays 0x01), never sealed anew.
	SuiteRandomized Suite = 0x01
	// SuiteDeterministic: AES-SIV (RFC 5297, 512-bit key) under a key
	// derived per (class, tenant, table, column) from a search KEK. Equal
	// plaintexts in the same column give equal ciphertexts.
	SuiteDeterministic Suite = 0x02
	// SuiteRandomizedDerivedWrap: as SuiteRandomized, but the DEK is wrapped
	// under K_wrap = HKDF-SHA256(KEK, info = "fieldcrypt/v1/kek-wrap" ||
	// class || LP(tenant) || uint32be(version)) instead of the KEK, so a raw
	// KEK is only ever HKDF input (a search KEK is also the input of the
	// deterministic and blind-index keys). Seal and Reencrypt write it.
	SuiteRandomizedDerivedWrap Suite = 0x03
	// SuiteRandomizedSIVWrap: as SuiteRandomizedDerivedWrap, but the DEK is
	// wrapped with AES-SIV (RFC 5297, 512-bit key, one empty associated-data
	// component) under K_wrap_siv = HKDF-SHA256(KEK, info =
	// "fieldcrypt/v1/kek-wrap-siv" || class || LP(tenant) ||
	// uint32be(version), 64 bytes): 4 AES block calls per wrap instead of
	// KWP's 24, for 8 more bytes (70 bytes of overhead). docs/format.md
	// weighs it against 0x03.
	SuiteRandomizedSIVWrap Suite = 0x04
)

// Randomized reports whether s is a randomized suite (a per-value data key
// wrapped under a KEK, which Rewrap can move to another KEK version).
func (s Suite) Randomized() bool {
	return s == SuiteRandomized || s == SuiteRandomizedDerivedWrap || s == SuiteRandomizedSIVWrap
}

// wrappedSize is the size of the wrapped data key of a randomized suite.
func (s Suite) wrappedSize() int {
	if s == SuiteRandomizedSIVWrap {
		return sivWrappedDEKSize
	}
	return wrappedDEKSize
}

func (s Suite) String() string {
	switch s {
	case SuiteRandomized:
		return "randomized/AES-256-GCM+AES-256-KWP"
	case SuiteDeterministic:
		return "deterministic/AES-SIV-512"
	case SuiteRandomizedDerivedWrap:
		return "randomized/AES-256-GCM+AES-256-KWP(HKDF)"
	case SuiteRandomizedSIVWrap:
		return "randomized/AES-256-GCM+AES-SIV-512(HKDF)"
	}
	return fmt.Sprintf("suite(0x%02x)", uint8(s))
}

// flagRowBound marks a ciphertext whose associated data includes a row key.
const flagRowBound = 0x01

// Header is the public, unauthenticated-until-opened description of a
// ciphertext. Reading it needs no key.
type Header struct {
	Version    uint8
	Suite      Suite
	Class      Class
	KEKVersion uint32
	// RowBound reports whether the value is bound to a row key.
	RowBound bool
}

// Overhead returns the number of bytes a ciphertext of this suite and KEK
// version adds to the plaintext in binary form.
func Overhead(suite Suite, kekVersion uint32) int {
	h := fixedHeaderSize + uvarintLen(uint64(kekVersion))
	if suite == SuiteDeterministic {
		return h + sivSize
	}
	return h + suite.wrappedSize() + tagSize
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendHeader appends the header bytes of h to dst.
func appendHeader(dst []byte, h Header) []byte {
	var flags byte
	if h.RowBound {
		flags |= flagRowBound
	}
	dst = append(dst, magic, formatVersion, byte(h.Suite), flags, byte(h.Class))
	return binary.AppendUvarint(dst, uint64(h.KEKVersion))
}

// parseHeader parses the header at the start of b and returns it with its
// encoded length. It checks every length before it reads.
func parseHeader(b []byte) (Header, int, error) {
	var h Header
	if len(b) < fixedHeaderSize+1 {
		return h, 0, fmt.Errorf("%w: %d bytes is shorter than any header", ErrMalformed, len(b))
	}
	if b[0] != magic {
		return h, 0, fmt.Errorf("%w: not a fieldcrypt ciphertext (bad magic byte)", ErrMalformed)
	}
	if b[1] != formatVersion {
		return h, 0, fmt.Errorf("%w: format version %d (this build reads version %d)", ErrUnsupportedVersion, b[1], formatVersion)
	}
	h.Version = b[1]
	h.Suite = Suite(b[2])
	if !h.Suite.Randomized() && h.Suite != SuiteDeterministic {
		return h, 0, fmt.Errorf("%w: unknown algorithm suite 0x%02x", ErrUnsupportedVersion, b[2])
	}
	flags := b[3]
	if flags&^flagRowBound != 0 {
		return h, 0, fmt.Errorf("%w: unknown header flags 0x%02x", ErrMalformed, flags)
	}
	h.RowBound = flags&flagRowBound != 0
	if h.Suite == SuiteDeterministic && h.RowBound {
		return h, 0, fmt.Errorf("%w: deterministic ciphertexts are never row-bound", ErrMalformed)
	}
	h.Class = Class(b[4])
	if !h.Class.Encrypted() {
		return h, 0, fmt.Errorf("%w: class byte %d names no encrypted class", ErrMalformed, b[4])
	}
	v, n := binary.Uvarint(b[fixedHeaderSize:])
	if n <= 0 || v == 0 || v > 1<<32-1 || n != uvarintLen(v) {
		return h, 0, fmt.Errorf("%w: bad KEK version field", ErrMalformed)
	}
	h.KEKVersion = uint32(v)
	return h, fixedHeaderSize + n, nil
}

// Inspect parses the header of a binary or text-encoded ciphertext without
// any key. It does not authenticate anything: use it to route (which key
// version, which class), never to trust.
func Inspect(ciphertext []byte) (Header, error) {
	raw, err := maybeDecodeText(ciphertext)
	if err != nil {
		return Header{}, err
	}
	h, n, err := parseHeader(raw)
	if err != nil {
		return h, err
	}
	min := h.Suite.wrappedSize() + tagSize
	if h.Suite == SuiteDeterministic {
		min = sivSize
	}
	if len(raw)-n < min {
		return h, fmt.Errorf("%w: truncated after header (%d bytes)", ErrMalformed, len(raw))
	}
	return h, nil
}

// maxHeaderText is the longest text encoding of a header: a header is at
// most fixedHeaderSize + 5 varint bytes = 10 bytes, within the 12 that 16
// base64 characters hold.
const maxHeaderText = 16

// InspectHeader parses only the header of a binary or text-encoded
// ciphertext, decoding no more of a text one than the header needs (16
// characters), so it costs the same whatever the value's size. Like
// Inspect it authenticates nothing: use it to route (is this value bound
// to its row, which class, which key version), never to trust. Unlike
// Inspect it does not check what follows the header.
func InspectHeader(ciphertext []byte) (Header, error) {
	raw := ciphertext
	if len(ciphertext) >= len(TextPrefix) && string(ciphertext[:len(TextPrefix)]) == TextPrefix {
		enc := ciphertext[len(TextPrefix):]
		if len(enc) > maxHeaderText {
			enc = enc[:maxHeaderText] // whole 4-character groups: no trailing bits
		}
		if bytes.ContainsAny(enc, "\r\n") {
			return Header{}, fmt.Errorf("%w: text encoding is not canonical base64", ErrMalformed)
		}
		var buf [maxHeaderText / 4 * 3]byte
		n, err := base64.RawStdEncoding.Strict().Decode(buf[:], enc)
		if err != nil {
			return Header{}, fmt.Errorf("%w: bad base64 in text encoding", ErrMalformed)
		}
		raw = buf[:n]
	}
	h, _, err := parseHeader(raw)
	return h, err
}

// IsCiphertext reports whether b starts like a format-1 ciphertext, binary
// or text. It is a cheap test for telling legacy plaintext from ciphertext
// during a migration; Open is the only real check.
func IsCiphertext(b []byte) bool {
	if len(b) >= 2 && b[0] == magic && b[1] == formatVersion {
		return true
	}
	return len(b) > len(TextPrefix) && string(b[:len(TextPrefix)]) == TextPrefix
}

// IsText reports whether s carries the text-encoding prefix.
func IsText(s string) bool { return strings.HasPrefix(s, TextPrefix) }

// EncodeText returns the text encoding of a binary ciphertext: TextPrefix
// followed by unpadded standard base64. Use it for string columns.
func EncodeText(ciphertext []byte) string {
	out := make([]byte, len(TextPrefix)+base64.RawStdEncoding.EncodedLen(len(ciphertext)))
	copy(out, TextPrefix)
	base64.RawStdEncoding.Encode(out[len(TextPrefix):], ciphertext)
	return string(out)
}

// DecodeText returns the binary ciphertext of a text-encoded one. It
// accepts only the canonical form EncodeText produces (the standard
// alphabet, no padding, no line breaks or other bytes, zero trailing bits),
// so two different strings never decode to the same ciphertext.
func DecodeText(s string) ([]byte, error) {
	if !IsText(s) {
		return nil, fmt.Errorf("%w: missing %q prefix", ErrMalformed, TextPrefix)
	}
	enc := s[len(TextPrefix):]
	// Go's base64 decoders skip CR and LF, even in Strict mode; Strict
	// rejects every other deviation (padding, other bytes, non-zero
	// trailing bits, a length of 1 mod 4).
	if strings.ContainsAny(enc, "\r\n") || len(enc)%4 == 1 {
		return nil, fmt.Errorf("%w: text encoding is not canonical base64", ErrMalformed)
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: bad base64 in text encoding", ErrMalformed)
	}
	return b, nil
}

// maybeDecodeText accepts either form and returns the binary one.
func maybeDecodeText(b []byte) ([]byte, error) {
	if len(b) >= len(TextPrefix) && string(b[:len(TextPrefix)]) == TextPrefix {
		return DecodeText(string(b))
	}
	return b, nil
}
