package envelope

import (
	"context"
	"fmt"
)

// appendKeyInfo appends the HKDF info of a search key to dst:
// label || class || LP(tenant) || LP(table) || LP(column) || LP(extra)...
// (docs/format.md, "Key derivations").
func appendKeyInfo(dst []byte, label string, b Binding, extra ...string) []byte {
	dst = append(dst, label...)
	dst = append(dst, byte(b.Class))
	dst = appendLP(dst, b.Tenant)
	dst = appendLP(dst, b.Table)
	dst = appendLP(dst, b.Column)
	for _, s := range extra {
		dst = appendLP(dst, s)
	}
	return dst
}

// smallBuf is the size of the stack buffers that hold key infos and
// associated data: bindings with short names fit, longer ones spill to
// the heap (append grows the slice).
const smallBuf = 256

const sivAADLabel = "fieldcrypt/v1/siv\x00"

// appendSIVAAD builds the associated data of a deterministic ciphertext:
// label || full header (KEK version included) || LP(tenant) || LP(table) ||
// LP(column). The row is never bound: equal values in different rows must
// give equal ciphertexts.
func appendSIVAAD(dst, hdr []byte, b Binding) []byte {
	dst = append(dst, sivAADLabel...)
	dst = append(dst, hdr...)
	dst = appendLP(dst, b.Tenant)
	dst = appendLP(dst, b.Table)
	return appendLP(dst, b.Column)
}

// SealDeterministic encrypts plaintext so that equal plaintexts in the same
// (class, tenant, table, column) give equal ciphertexts, which makes
// equality queries and unique indexes possible on the ciphertext column.
// It leaks equality and therefore frequency; prefer Seal with a blind index
// unless the value itself must be matched in SQL. See docs/searchable.md.
//
// The key is AES-SIV, derived with HKDF-SHA256 from the scope's first
// search KEK, not from the primary: rotating the primary KEK does not change
// deterministic ciphertexts. b.Row is ignored.
func (e *Envelope) SealDeterministic(ctx context.Context, b Binding, plaintext []byte) (out []byte, err error) {
	b.Row = ""
	defer func() { e.count(ctx, false, b.Class, b.Tenant, kindDeterministic, err) }()
	keks, err := e.searchKEKs(ctx, "seal-deterministic", b)
	if err != nil {
		return nil, err
	}
	return sealDeterministic(keks[0], b, plaintext)
}

// DeterministicCandidates returns the deterministic ciphertext of plaintext
// under every live search KEK of the scope, newest first. An equality query
// matches the column against all of them (WHERE col IN (...)), so it keeps
// finding values sealed before a search-key rotation until they are
// re-encrypted.
func (e *Envelope) DeterministicCandidates(ctx context.Context, b Binding, plaintext []byte) (_ [][]byte, err error) {
	b.Row = ""
	defer func() { e.count(ctx, false, b.Class, b.Tenant, kindDeterministic, err) }()
	keks, err := e.searchKEKs(ctx, "seal-deterministic", b)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(keks))
	for _, k := range keks {
		ct, err := sealDeterministic(k, b, plaintext)
		if err != nil {
			return nil, err
		}
		out = append(out, ct)
	}
	return out, nil
}

func (e *Envelope) searchKEKs(ctx context.Context, op string, b Binding) ([]*KEK, error) {
	if err := b.validate(); err != nil {
		return nil, &Error{Op: op, Binding: b, Err: err}
	}
	keks, err := e.keys.SearchKEKs(ctx, b.Scope())
	if err != nil {
		return nil, &Error{Op: op, Binding: b, Err: err}
	}
	if len(keks) == 0 {
		return nil, &Error{Op: op, Binding: b, Err: fmt.Errorf("%w: scope %s has no search key", ErrUnknownKey, b.Scope())}
	}
	for _, k := range keks {
		if err := k.usable(); err != nil {
			return nil, &Error{Op: op, Binding: b, Err: err}
		}
		if k.ref.Class != b.Class || k.ref.Tenant != b.Tenant {
			return nil, &Error{Op: op, Binding: b, Err: fmt.Errorf("%w: key source returned KEK %s for scope %s", ErrUnknownKey, k.ref, b.Scope())}
		}
	}
	return keks, nil
}

// sealDeterministic seals under kek, holding a reference to it for the
// duration; it fails with ErrKeyDestroyed if kek is destroyed meanwhile.
// The result is the only allocation.
func sealDeterministic(kek *KEK, b Binding, plaintext []byte) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		ref := kek.ref
		return nil, &Error{Op: "seal-deterministic", Binding: b, KEK: &ref, Err: err}
	}
	if err := kek.acquire(); err != nil {
		return fail(err)
	}
	defer kek.release()
	var infoBuf [smallBuf]byte
	d, err := kek.derive(appendKeyInfo(infoBuf[:0], labelSIV, b))
	if err != nil {
		return fail(err)
	}
	h := Header{Version: formatVersion, Suite: SuiteDeterministic, Class: b.Class, KEKVersion: kek.ref.Version}
	n := Overhead(SuiteDeterministic, h.KEKVersion) + len(plaintext)
	out := make([]byte, n)
	hdr := appendHeader(out[:0], h)
	w := getWork()
	defer putWork(w)
	// Our AES-SIV reads the associated data without an interface call, so
	// it can stay on the stack.
	var aadBuf [smallBuf]byte
	d.siv.Seal(out[len(hdr):], plaintext, appendSIVAAD(aadBuf[:0], hdr, b), w.scratch())
	// As in seal: a value under a KEK destroyed meanwhile is refused.
	if err := kek.usable(); err != nil {
		return fail(err)
	}
	return out, nil
}

// openDeterministic opens a deterministic value under kek, which the caller
// holds a reference to.
func openDeterministic(kek *KEK, b Binding, p parsed) ([]byte, error) {
	b.Row = ""
	var infoBuf [smallBuf]byte
	d, err := kek.derive(appendKeyInfo(infoBuf[:0], labelSIV, b))
	if err != nil {
		return nil, err
	}
	pt := make([]byte, len(p.body)-sivSize)
	w := getWork()
	defer putWork(w)
	var aadBuf [smallBuf]byte
	if err := d.siv.Open(pt, p.body, appendSIVAAD(aadBuf[:0], p.hdr, b), w.scratch()); err != nil {
		return nil, fmt.Errorf("%w: value does not authenticate for this table, column, class and tenant", ErrAuthentication)
	}
	return pt, nil
}
