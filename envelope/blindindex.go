package envelope

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"

	"golang.org/x/crypto/argon2"
)

// BlindIndex describes a blind index: a keyed hash of a value stored in a
// column of its own, so equality queries run on the hash while the value
// stays randomly encrypted. It leaks equality (and so frequency) of the
// value within one index, and nothing more; a short Size adds deliberate
// false positives, which hides some of that frequency at the cost of
// filtering candidates after decryption.
type BlindIndex struct {
	// Name distinguishes several indexes on one column; it enters the key
	// derivation. Empty means the column name.
	Name string
	// Size is the number of bytes kept from the HMAC-SHA256 output: 4 to 32,
	// default 16. Unique constraints want 16 or more.
	Size int
	// Argon2 slows the hash down for low-entropy values (dates of birth,
	// short codes), so an attacker holding the index cannot enumerate every
	// candidate cheaply. Nil means plain HMAC-SHA256.
	Argon2 *Argon2Params
}

// Argon2Params are Argon2id parameters (RFC 9106). They must meet the
// OWASP password-storage minimum (see MinArgon2MemoryKiB).
type Argon2Params struct {
	Time      uint32 // iterations
	MemoryKiB uint32 // memory in KiB
	Threads   uint8
}

// The smallest Argon2id cost a blind index accepts, from OWASP's Password
// Storage Cheat Sheet, whose equivalent configurations are (m=47104 KiB,
// t=1), (19456, 2), (12288, 3), (9216, 4) and (7168, 5), p=1. Every one of
// them has m >= 7168 KiB and m*t >= 35840 KiB-passes, so that is the rule:
// trading memory for passes below 7 MiB would make GPU attacks cheaper, and
// less total work than OWASP's cheapest row is refused. More threads do not
// lower the bar (an attacker's cost does not depend on them).
const (
	MinArgon2MemoryKiB     = 7168
	MinArgon2MemoryTimeKiB = 35840
)

// OWASPArgon2 is an OWASP password-storage minimum for Argon2id (t=2,
// m=19 MiB, p=1): about 25 ms per value on the reference machine.
var OWASPArgon2 = Argon2Params{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

func (a Argon2Params) check() error {
	if a.Time < 1 || a.Threads < 1 || a.MemoryKiB < MinArgon2MemoryKiB ||
		uint64(a.MemoryKiB)*uint64(a.Time) < MinArgon2MemoryTimeKiB {
		return fmt.Errorf("%w: Argon2id parameters t=%d m=%d KiB p=%d are below the OWASP minimum (need time >= 1, threads >= 1, memory >= %d KiB and memory*time >= %d KiB, e.g. t=2 m=19456 p=1)",
			ErrInvalidInput, a.Time, a.MemoryKiB, a.Threads, MinArgon2MemoryKiB, MinArgon2MemoryTimeKiB)
	}
	return nil
}

// DefaultBlindIndexSize is the output size of a blind index when Size is 0.
const DefaultBlindIndexSize = 16

func (bi BlindIndex) check() (BlindIndex, error) {
	if bi.Size == 0 {
		bi.Size = DefaultBlindIndexSize
	}
	if bi.Size < 4 || bi.Size > sha256.Size {
		return bi, fmt.Errorf("%w: blind index size %d (want 4 to 32 bytes)", ErrInvalidInput, bi.Size)
	}
	if a := bi.Argon2; a != nil {
		if err := a.check(); err != nil {
			return bi, err
		}
	}
	return bi, nil
}

// ComputeBlindIndex returns the blind index of value under the scope's
// first search key. Store it in the index column when writing the value.
// b.Row is ignored.
func (e *Envelope) ComputeBlindIndex(ctx context.Context, b Binding, bi BlindIndex, value []byte) (_ []byte, err error) {
	b.Row = ""
	defer func() { e.count(ctx, false, b.Class, b.Tenant, kindBlindIndex, err) }()
	keks, err := e.searchKEKs(ctx, "blind-index", b)
	if err != nil {
		return nil, err
	}
	return blindIndex(keks[0], b, bi, value)
}

// ComputeBlindIndexText returns the blind index of value as it is stored
// in an index column: ComputeBlindIndex in lower-case hex. gormcrypt
// writes it on every insert and update, and the reencrypt engine when it
// migrates a column, so both give the same bytes for the same value,
// binding (class, tenant, table, column) and spec.
func (e *Envelope) ComputeBlindIndexText(ctx context.Context, b Binding, bi BlindIndex, value []byte) (string, error) {
	idx, err := e.ComputeBlindIndex(ctx, b, bi, value)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(idx), nil
}

// BlindIndexCandidates returns the blind index of value under every live
// search key, newest first: query with WHERE idx IN (...) so rows indexed
// before a search-key rotation are still found.
func (e *Envelope) BlindIndexCandidates(ctx context.Context, b Binding, bi BlindIndex, value []byte) (_ [][]byte, err error) {
	b.Row = ""
	defer func() { e.count(ctx, false, b.Class, b.Tenant, kindBlindIndex, err) }()
	keks, err := e.searchKEKs(ctx, "blind-index", b)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(keks))
	for _, k := range keks {
		idx, err := blindIndex(k, b, bi, value)
		if err != nil {
			return nil, err
		}
		out = append(out, idx)
	}
	return out, nil
}

func blindIndex(kek *KEK, b Binding, bi BlindIndex, value []byte) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		ref := kek.ref
		return nil, &Error{Op: "blind-index", Binding: b, KEK: &ref, Err: err}
	}
	bi, err := bi.check()
	if err != nil {
		return fail(err)
	}
	name := bi.Name
	if name == "" {
		name = b.Column
	}
	mode := "hmac"
	if a := bi.Argon2; a != nil {
		mode = a.mode()
	}
	if err := kek.acquire(); err != nil {
		return fail(err)
	}
	defer kek.release()
	var infoBuf [smallBuf]byte
	d, err := kek.derive(appendKeyInfo(infoBuf[:0], labelBlindIndex, b, name, mode))
	if err != nil {
		return fail(err)
	}
	st := d.getMAC()
	defer d.putMAC(st)
	h := st.h
	if a := bi.Argon2; a != nil {
		// The salt is secret and per index: HMAC(key, "argon2id-salt").
		h.Write([]byte("argon2id-salt"))
		salt := h.Sum(st.sum[:0])[:16]
		h.Reset()
		stretched := argon2.IDKey(value, salt, a.Time, a.MemoryKiB, a.Threads, 32)
		h.Write(stretched)
		clear(stretched)
	} else {
		h.Write(value)
	}
	// The sum goes to the pooled state's buffer (a buffer of ours would
	// escape through the hash.Hash interface, one more allocation); only
	// the index leaves this function.
	out := make([]byte, bi.Size)
	copy(out, h.Sum(st.sum[:0]))
	// A blind index is written next to a value sealed under the same
	// scope: refuse it, as a seal, if its KEK was destroyed meanwhile.
	if err := kek.usable(); err != nil {
		return fail(err)
	}
	return out, nil
}

// mode is the mode string of an Argon2id blind index, which enters its key
// derivation: "argon2id;t=T;m=M;p=P".
func (a *Argon2Params) mode() string {
	return fmt.Sprintf("argon2id;t=%d;m=%d;p=%d", a.Time, a.MemoryKiB, a.Threads)
}

// macState is a keyed HMAC and a buffer for its sum, pooled per derived
// key.
type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func (d *derivedKey) getMAC() *macState {
	if st, ok := d.macs.Get().(*macState); ok {
		return st
	}
	return &macState{h: hmac.New(sha256.New, d.mac)}
}

func (d *derivedKey) putMAC(st *macState) {
	st.h.Reset()
	clear(st.sum[:])
	d.macs.Put(st)
}
