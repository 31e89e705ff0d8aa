package envelope

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/metric"
)

// Binding is the context a value is bound to. Its fields enter the
// associated data of every ciphertext, so a value moved to another class,
// tenant, table, column or row fails authentication.
//
// Table and Column are required. Row is optional: when it is empty at Seal
// the ciphertext records that it is not row-bound (the header flag is
// authenticated, so an attacker cannot strip it); when a ciphertext is
// row-bound, Open needs the same Row. Tenant selects the KEK scope.
type Binding struct {
	Class  Class
	Tenant string
	Table  string
	Column string
	Row    string
}

// Scope returns the KEK scope of the binding.
func (b Binding) Scope() Scope { return Scope{Class: b.Class, Tenant: b.Tenant} }

func (b Binding) where() string {
	s := b.Table + "." + b.Column
	if b.Row != "" {
		s += " row " + b.Row
	}
	if b.Tenant != "" {
		s += " tenant " + b.Tenant
	}
	return s
}

const maxFieldLen = 1<<16 - 1

func (b Binding) validate() error {
	switch {
	case !b.Class.Encrypted():
		return fmt.Errorf("%w: class %s is not an encrypted class", ErrInvalidInput, b.Class)
	case b.Table == "" || b.Column == "":
		return fmt.Errorf("%w: binding needs a table and a column", ErrInvalidInput)
	case len(b.Table) > maxFieldLen || len(b.Column) > maxFieldLen || len(b.Row) > maxFieldLen || len(b.Tenant) > maxFieldLen:
		return fmt.Errorf("%w: binding field longer than %d bytes", ErrInvalidInput, maxFieldLen)
	}
	return nil
}

// Error is the error type of every failed operation on a value. It says
// where the failure happened (operation, table, column, row, KEK version),
// never what the value was. Err wraps one of the package's sentinels.
type Error struct {
	Op      string // "seal", "open", "rewrap", "blind-index", ...
	Binding Binding
	KEK     *KEKRef // nil when no key was involved yet
	Err     error
}

func (e *Error) Error() string {
	s := "fieldcrypt: " + e.Op
	if e.Binding.Table != "" || e.Binding.Column != "" {
		s += " " + e.Binding.where()
	}
	if e.KEK != nil {
		s += " (KEK " + e.KEK.String() + ")"
	} else if e.Binding.Class.Valid() {
		s += " (class " + e.Binding.Class.String() + ")"
	}
	return s + ": " + trimPrefix(e.Err.Error())
}

// Unwrap returns the cause.
func (e *Error) Unwrap() []error { return []error{e.Err} }

func trimPrefix(s string) string {
	const p = "fieldcrypt: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// Envelope seals and opens values with a per-value data key wrapped under a
// key-encryption key from a KeySource. It is safe for concurrent use.
type Envelope struct {
	keys  KeySource
	suite Suite // the suite Seal and Reencrypt write

	mp           metric.MeterProvider // WithMeterProvider
	mpSet        bool
	tenantLabels bool            // WithTenantLabels
	noTel        bool            // withoutTelemetry
	tel          *envInstruments // nil: not counted
}

// DefaultSuite is the suite Seal writes unless WithSealSuite says
// otherwise.
const DefaultSuite = SuiteRandomizedDerivedWrap

// Option configures an Envelope.
type Option func(*Envelope)

// WithSealSuite makes Seal and Reencrypt write randomized values of suite s:
// SuiteRandomizedDerivedWrap (AES-KWP, NIST SP 800-38F) or
// SuiteRandomizedSIVWrap (AES-SIV, RFC 5297: about a fifth of KWP's cost
// per wrap, 8 bytes more per value; see docs/format.md). Every suite is
// read whatever this option says. 0 means DefaultSuite; any other suite
// makes Seal fail with ErrInvalidInput.
func WithSealSuite(s Suite) Option { return func(e *Envelope) { e.suite = s } }

// New returns an Envelope that takes its keys from keys (usually a
// *keyring.Keyring).
func New(keys KeySource, opts ...Option) *Envelope {
	e := &Envelope{keys: keys, suite: DefaultSuite}
	for _, o := range opts {
		o(e)
	}
	e.initTelemetry()
	return e
}

var zeroNonce [12]byte

// work is per-operation working memory: the scratch block of a key wrap
// (wrapScratch bytes) and then the associated data. Both reach the block
// cipher or the AEAD through an interface, where memory on the stack would
// escape and cost an allocation, and bytes allocated per value are what the
// garbage collector charges for; pooled, they cost neither. It holds no
// secret between uses: the wraps clear their scratch, and associated data
// is public. Associated data longer than the rest of it (long names) is
// appended to a fresh slice instead.
type work [256]byte

var workPool = sync.Pool{New: func() any { return new(work) }}

func getWork() *work            { return workPool.Get().(*work) }
func putWork(w *work)           { workPool.Put(w) }
func (w *work) scratch() []byte { return w[:wrapScratch] }

// aad returns an empty slice to append associated data to.
func (w *work) aad() []byte { return w[wrapScratch:wrapScratch] }

// appendLP appends a 4-byte big-endian length and s.
func appendLP(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

const dataAADLabel = "fieldcrypt/v1/data\x00"

// appendDataAAD builds the associated data of a randomized ciphertext:
// label || header[0:5] || LP(tenant) || LP(table) || LP(column) || LP(row).
// The KEK version is deliberately absent: the wrap binds it, so Rewrap can
// change it without touching the data ciphertext.
func appendDataAAD(dst []byte, fixed []byte, b Binding, rowBound bool) []byte {
	dst = append(dst, dataAADLabel...)
	dst = append(dst, fixed[:fixedHeaderSize]...)
	dst = appendLP(dst, b.Tenant)
	dst = appendLP(dst, b.Table)
	dst = appendLP(dst, b.Column)
	if rowBound {
		dst = appendLP(dst, b.Row)
	} else {
		dst = appendLP(dst, "")
	}
	return dst
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext under a fresh random data key, wraps the data key
// under the scope's primary KEK, and binds the result to b. The result is
// the binary form; EncodeText gives the text form.
//
// New values use suite 0x03 (SuiteRandomizedDerivedWrap). If the primary
// KEK is destroyed while Seal runs, Seal fails with ErrKeyDestroyed.
func (e *Envelope) Seal(ctx context.Context, b Binding, plaintext []byte) ([]byte, error) {
	out, err := e.sealPrimary(ctx, b, plaintext)
	e.count(ctx, false, b.Class, b.Tenant, kindRandom, err)
	return out, err
}

func (e *Envelope) sealPrimary(ctx context.Context, b Binding, plaintext []byte) ([]byte, error) {
	fail := func(ref *KEKRef, err error) ([]byte, error) {
		return nil, &Error{Op: "seal", Binding: b, KEK: ref, Err: err}
	}
	if err := b.validate(); err != nil {
		return fail(nil, err)
	}
	kek, err := e.keys.PrimaryKEK(ctx, b.Scope())
	if err != nil {
		return fail(nil, err)
	}
	if err := kek.acquire(); err != nil {
		return fail(nil, err)
	}
	defer kek.release()
	return e.seal(b, kek, plaintext)
}

// seal seals under kek, which the caller holds a reference to. It
// allocates the result and nothing else but the data key's AES-GCM.
func (e *Envelope) seal(b Binding, kek *KEK, plaintext []byte) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		ref := kek.ref
		return nil, &Error{Op: "seal", Binding: b, KEK: &ref, Err: err}
	}
	if kek.ref.Class != b.Class || kek.ref.Tenant != b.Tenant {
		return fail(fmt.Errorf("%w: key source returned KEK %s for scope %s", ErrUnknownKey, kek.ref, b.Scope()))
	}
	suite := e.suite
	if suite == 0 {
		suite = DefaultSuite
	}
	if suite != SuiteRandomizedDerivedWrap && suite != SuiteRandomizedSIVWrap {
		return fail(fmt.Errorf("%w: Seal does not write suite %s", ErrInvalidInput, suite))
	}
	var dek [dekSize]byte
	if _, err := rand.Read(dek[:]); err != nil {
		return fail(fmt.Errorf("%w: random source failed", ErrKeyUnavailable))
	}
	defer clear(dek[:])
	h := Header{Version: formatVersion, Suite: suite, Class: b.Class, KEKVersion: kek.ref.Version, RowBound: b.Row != ""}
	w := getWork()
	defer putWork(w)
	out := appendHeader(make([]byte, 0, Overhead(suite, h.KEKVersion)+len(plaintext)), h)
	hl := len(out)
	out = out[:hl+suite.wrappedSize()]
	if err := kek.wrapDEK(suite, out[hl:], &dek, w.scratch()); err != nil {
		return fail(fmt.Errorf("%w: wrapping the data key failed", ErrInvalidInput))
	}
	gcm, err := newGCM(dek[:])
	if err != nil {
		return fail(fmt.Errorf("%w: data key setup failed", ErrInvalidInput))
	}
	out = gcm.Seal(out, zeroNonce[:], plaintext, appendDataAAD(w.aad(), out, b, h.RowBound))
	// A KEK destroyed while we sealed may be a shredded version: a value
	// under it would be unreadable for good, so fail instead.
	if err := kek.usable(); err != nil {
		return fail(err)
	}
	return out, nil
}

// parsed is a ciphertext split into its parts.
type parsed struct {
	h       Header
	hdr     []byte // the encoded header
	wrapped []byte // randomized suite only
	body    []byte // GCM ciphertext||tag, or SIV||ciphertext
}

func parse(ct []byte) (parsed, error) {
	raw, err := maybeDecodeText(ct)
	if err != nil {
		return parsed{}, err
	}
	h, n, err := parseHeader(raw)
	if err != nil {
		return parsed{}, err
	}
	p := parsed{h: h, hdr: raw[:n]}
	rest := raw[n:]
	switch {
	case h.Suite.Randomized():
		w := h.Suite.wrappedSize()
		if len(rest) < w+tagSize {
			return p, fmt.Errorf("%w: truncated (%d bytes after the header, need at least %d)", ErrMalformed, len(rest), w+tagSize)
		}
		p.wrapped, p.body = rest[:w], rest[w:]
	case h.Suite == SuiteDeterministic:
		if len(rest) < sivSize {
			return p, fmt.Errorf("%w: truncated (%d bytes after the header, need at least %d)", ErrMalformed, len(rest), sivSize)
		}
		p.body = rest
	}
	return p, nil
}

// Open authenticates and decrypts a ciphertext (binary or text form) sealed
// for b. It asks the key source for exactly one key: the version the header
// names, in b's tenant scope.
func (e *Envelope) Open(ctx context.Context, b Binding, ciphertext []byte) ([]byte, error) {
	pt, kek, kind, err := e.open(ctx, b, ciphertext)
	if kek != nil {
		kek.release()
	}
	e.count(ctx, true, b.Class, b.Tenant, kind, err)
	return pt, err
}

// open is Open, except that it returns the KEK it took a reference to
// (whether or not it succeeded) for the caller to release: Reencrypt holds
// it until its new seal is done.
func (e *Envelope) open(ctx context.Context, b Binding, ciphertext []byte) (_ []byte, held *KEK, kind int, _ error) {
	var (
		ref     KEKRef
		haveRef bool
	)
	fail := func(err error) ([]byte, *KEK, int, error) {
		fe := &Error{Op: "open", Binding: b, Err: err}
		if haveRef {
			r := ref
			fe.KEK = &r
		}
		return nil, held, kind, fe
	}
	if err := b.validate(); err != nil {
		return fail(err)
	}
	p, err := parse(ciphertext)
	if err != nil {
		return fail(err)
	}
	ref, haveRef = KEKRef{Class: p.h.Class, Tenant: b.Tenant, Version: p.h.KEKVersion}, true
	if p.h.Suite == SuiteDeterministic {
		kind = kindDeterministic
	}
	if p.h.Class != b.Class {
		return fail(fmt.Errorf("%w: ciphertext is of class %s, expected %s", ErrAuthentication, p.h.Class, b.Class))
	}
	if p.h.RowBound && b.Row == "" {
		return fail(fmt.Errorf("%w: ciphertext is bound to a row but no row key was given", ErrAuthentication))
	}
	kek, err := e.keys.KEK(ctx, ref)
	if err != nil {
		return fail(err)
	}
	if err := kek.acquire(); err != nil {
		return fail(err)
	}
	held = kek
	if kek.ref != ref {
		return fail(fmt.Errorf("%w: key source returned KEK %s", ErrUnknownKey, kek.ref))
	}
	var pt []byte
	if p.h.Suite == SuiteDeterministic {
		pt, err = openDeterministic(kek, b, p)
	} else {
		pt, err = openRandomized(kek, b, p)
	}
	if err != nil {
		return fail(err)
	}
	return pt, held, kind, nil
}

// openRandomized opens a value of a randomized suite under kek, which the
// caller holds a reference to. It allocates the result and nothing else
// but the data key's AES-GCM.
func openRandomized(kek *KEK, b Binding, p parsed) ([]byte, error) {
	w := getWork()
	defer putWork(w)
	var dek [dekSize]byte
	if err := kek.unwrapDEK(p.h.Suite, &dek, p.wrapped, w.scratch()); err != nil {
		return nil, err
	}
	defer clear(dek[:])
	gcm, err := newGCM(dek[:])
	if err != nil {
		return nil, fmt.Errorf("%w: data key setup failed", ErrMalformed)
	}
	buf := make([]byte, 0, len(p.body)-tagSize)
	pt, err := gcm.Open(buf, zeroNonce[:], p.body, appendDataAAD(w.aad(), p.hdr, b, p.h.RowBound))
	if err != nil {
		clear(buf[:cap(buf)])
		return nil, fmt.Errorf("%w: value does not authenticate for this table, column, row, class and tenant", ErrAuthentication)
	}
	return pt, nil
}

// Rewrap moves a randomized ciphertext to the scope's primary KEK: it
// unwraps the data key under the KEK the header names and wraps it under
// the primary, replacing only the wrapped key and the KEK version. The data
// ciphertext is copied byte for byte and the plaintext is never computed.
// A ciphertext already under the primary is returned unchanged. The suite
// is kept (it is in the data's associated data): a suite 0x01 value stays
// 0x01; Reencrypt moves it to 0x03.
//
// Rewrap uses b only for the tenant scope and error messages; it does not
// authenticate the data (Open does). Deterministic ciphertexts have no data
// key to rewrap: re-encrypt them with Reencrypt when the search key changes.
// The result has the same form (binary or text) as the input. If either KEK
// is destroyed while Rewrap runs, it fails with ErrKeyDestroyed.
func (e *Envelope) Rewrap(ctx context.Context, b Binding, ciphertext []byte) ([]byte, error) {
	var (
		ref     KEKRef
		haveRef bool
	)
	fail := func(err error) ([]byte, error) {
		fe := &Error{Op: "rewrap", Binding: b, Err: err}
		if haveRef {
			r := ref
			fe.KEK = &r
		}
		return nil, fe
	}
	p, err := parse(ciphertext)
	if err != nil {
		return fail(err)
	}
	ref, haveRef = KEKRef{Class: p.h.Class, Tenant: b.Tenant, Version: p.h.KEKVersion}, true
	if b.Class.Valid() && p.h.Class != b.Class {
		return fail(fmt.Errorf("%w: ciphertext is of class %s, expected %s", ErrAuthentication, p.h.Class, b.Class))
	}
	if !p.h.Suite.Randomized() {
		return fail(fmt.Errorf("%w: deterministic values have no data key to rewrap; use Reencrypt", ErrInvalidInput))
	}
	scope := Scope{Class: p.h.Class, Tenant: b.Tenant}
	primary, err := e.keys.PrimaryKEK(ctx, scope)
	if err != nil {
		return fail(err)
	}
	if err := primary.acquire(); err != nil {
		return fail(err)
	}
	defer primary.release()
	if primary.ref.Scope() != scope {
		return fail(fmt.Errorf("%w: key source returned KEK %s for scope %s", ErrUnknownKey, primary.ref, scope))
	}
	if primary.ref.Version == p.h.KEKVersion {
		return ciphertext, nil
	}
	old, err := e.keys.KEK(ctx, ref)
	if err != nil {
		return fail(err)
	}
	if err := old.acquire(); err != nil {
		return fail(err)
	}
	defer old.release()
	if old.ref != ref {
		return fail(fmt.Errorf("%w: key source returned KEK %s", ErrUnknownKey, old.ref))
	}
	h := p.h
	h.KEKVersion = primary.ref.Version
	w := getWork()
	defer putWork(w)
	scratch := w.scratch()
	var dek [dekSize]byte
	if err := old.unwrapDEK(p.h.Suite, &dek, p.wrapped, scratch); err != nil {
		return fail(err)
	}
	defer clear(dek[:])
	ref = primary.ref
	out := appendHeader(make([]byte, 0, Overhead(h.Suite, h.KEKVersion)+len(p.body)-tagSize), h)
	hl := len(out)
	out = out[:hl+len(p.wrapped)]
	if err := primary.wrapDEK(h.Suite, out[hl:], &dek, scratch); err != nil {
		return fail(fmt.Errorf("%w: wrapping the data key failed", ErrInvalidInput))
	}
	out = append(out, p.body...)
	// The data key now lives under the primary: if the old version was
	// shredded meanwhile, its values must not move on; if the primary was,
	// the result would be unreadable.
	for _, k := range [...]*KEK{old, primary} {
		if err := k.usable(); err != nil {
			ref = k.ref
			return fail(err)
		}
	}
	if IsText(string(ciphertext[:min(len(ciphertext), len(TextPrefix))])) {
		return []byte(EncodeText(out)), nil
	}
	return out, nil
}

// Reencrypt opens a ciphertext and seals its value again with a fresh data
// key under the primary KEK (or, for a deterministic value, under the first
// search key). The plaintext exists only inside this call and is zeroed
// before it returns. The result has the same form as the input; randomized
// values come out in the suite Seal writes (see WithSealSuite) whatever
// suite they had.
//
// Reencrypt holds the KEK it opened with until the new seal is done: if
// that KEK (or the one sealed under) is destroyed meanwhile, it fails with
// ErrKeyDestroyed, so a value whose key was shredded does not live on.
func (e *Envelope) Reencrypt(ctx context.Context, b Binding, ciphertext []byte) ([]byte, error) {
	return e.ReencryptWith(ctx, b, ciphertext, nil)
}

// ReencryptWith is Reencrypt that also hands the plaintext to with while
// the source KEK is still held, so that something derived from the value
// (its blind indexes, say) is computed in the same pass and under the same
// guarantee: if the source KEK is destroyed before the new seal is done,
// ReencryptWith fails with ErrKeyDestroyed and whatever with computed must
// be discarded. with must not keep the slice: it is zeroed when
// ReencryptWith returns. An error from with is returned as it is.
func (e *Envelope) ReencryptWith(ctx context.Context, b Binding, ciphertext []byte, with func(plaintext []byte) error) ([]byte, error) {
	h, err := Inspect(ciphertext)
	if err != nil {
		return nil, &Error{Op: "reencrypt", Binding: b, Err: err}
	}
	pt, src, kind, err := e.open(ctx, b, ciphertext)
	if src != nil {
		defer src.release()
	}
	e.count(ctx, true, b.Class, b.Tenant, kind, err)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	var out []byte
	if h.Suite == SuiteDeterministic {
		out, err = e.SealDeterministic(ctx, b, pt)
	} else {
		out, err = e.Seal(ctx, b, pt)
	}
	if err != nil {
		return nil, err
	}
	if with != nil {
		if err := with(pt); err != nil {
			return nil, err
		}
	}
	if err := src.usable(); err != nil {
		r := src.ref
		return nil, &Error{Op: "reencrypt", Binding: b, KEK: &r, Err: err}
	}
	if IsCiphertext(ciphertext) && len(ciphertext) >= len(TextPrefix) && IsText(string(ciphertext[:len(TextPrefix)])) {
		return []byte(EncodeText(out)), nil
	}
	return out, nil
}
