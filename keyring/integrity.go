package keyring

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// unsealedReason explains ErrUnsealed.
const unsealedReason = "the key store predates integrity protection: run 'fieldcrypt keys upgrade' (Keyring.Upgrade) once, or set allow_unsealed_store (Config.AllowUnsealedStore) while you migrate"

// macSize is the size of ScopeState.MAC (HMAC-SHA256).
const macSize = sha256.Size

// macLabel starts the MAC input, so it can never be confused with another
// use of the same key. macLabelV2 starts it for states that hold a KEK
// wrapped by the class key: their encoding carries each record's wrapping.
const (
	macLabel   = "fieldcrypt/v1/keyring-state-mac"
	macLabelV2 = "fieldcrypt/v2/keyring-state-mac"
)

// stateMAC authenticates everything a scope state says, under the class's
// MAC key: HMAC-SHA256 of an unambiguous encoding (every variable-length
// field length-prefixed) of the keyring name, the scope, the epoch, every
// record (version, state, [wrapping,] master key URI, SHA-256 of the
// wrapped key, created, updated, demoted and destroyed times in
// milliseconds), the search list and the class key (master key URI,
// SHA-256 of the wrapped key, creation time).
//
// A state none of whose records is wrapped by the class key is encoded
// exactly as before class-key wrapping existed (label v1, no wrapping
// field), so existing sealed stores verify unchanged; any other state is
// encoded under label v2 with the wrapping of every record. Changing a
// record's wrapping therefore changes the encoding and the label.
func (k *Keyring) stateMAC(macKey []byte, st *ScopeState) []byte {
	label := macLabel
	v2 := slices.ContainsFunc(st.Records, func(r Record) bool { return r.WrappedBy != WrapMasterKey })
	if v2 {
		label = macLabelV2
	}
	b := appendString(nil, label)
	b = appendString(b, k.name)
	b = appendString(b, st.Scope.Class.String())
	b = appendString(b, st.Scope.Tenant)
	b = binary.BigEndian.AppendUint64(b, st.Epoch)
	b = binary.BigEndian.AppendUint32(b, uint32(len(st.Records)))
	for _, r := range st.Records {
		b = binary.BigEndian.AppendUint32(b, r.Version)
		b = appendString(b, string(r.State))
		if v2 {
			b = appendString(b, string(r.WrappedBy))
		}
		b = appendString(b, r.MasterKeyURI)
		b = appendDigest(b, r.Wrapped)
		for _, t := range []time.Time{r.CreatedAt, r.UpdatedAt, r.DemotedAt, r.DestroyedAt} {
			b = appendTime(b, t)
		}
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(st.Search)))
	for _, v := range st.Search {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	if ck := st.ClassKey; ck == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendString(b, ck.MasterKeyURI)
		b = appendDigest(b, ck.Wrapped)
		b = appendTime(b, ck.CreatedAt)
	}
	m := hmac.New(sha256.New, macKey)
	m.Write(b)
	return m.Sum(nil)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendDigest appends 0 for no bytes, else 1 and their SHA-256.
func appendDigest(b, data []byte) []byte {
	if len(data) == 0 {
		return append(b, 0)
	}
	sum := sha256.Sum256(data)
	return append(append(b, 1), sum[:]...)
}

// appendTime appends 0 for the zero time, else 1 and its Unix time in
// milliseconds (every store keeps at least that precision; the keyring
// stamps times truncated to it).
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	return binary.BigEndian.AppendUint64(append(b, 1), uint64(t.UnixMilli()))
}

// stamp is the time the keyring records: now, in UTC, to the millisecond.
func (k *Keyring) stamp() time.Time { return k.now().UTC().Truncate(time.Millisecond) }

// trusts reports whether the configuration lists uri as a master key of
// class c.
func (k *Keyring) trusts(c envelope.Class, uri string) bool {
	k.cfgMu.RLock()
	defer k.cfgMu.RUnlock()
	return k.cfg.Classes[c.String()].trusts(uri)
}

func (k *Keyring) untrustedReason(c envelope.Class, uri string) string {
	k.cfgMu.RLock()
	cc := k.cfg.Classes[c.String()]
	k.cfgMu.RUnlock()
	trusted := append([]string{cc.MasterKey}, cc.PreviousMasterKeys...)
	reason := "stored under a master key that is not configured for class " + c.String() + " (configured: " + strings.Join(trusted, ", ") + ")"
	if owner := k.uriOwner(uri); owner != 0 && owner != c {
		reason += "; it is a master key of class " + owner.String() + " (keys never cross classification levels)"
	} else {
		reason += "; a store writer may have added it, or the configuration dropped a master key still in use (list it in previous_master_keys)"
	}
	return reason
}

// emitTamper records a keyring.tamper event: the scope, the version and
// master key when known, and what failed (never key material).
func (k *Keyring) emitTamper(ctx context.Context, s envelope.Scope, v uint32, uri string, err error) {
	k.emit(ctx, audit.KeyringTamper, envelope.KEKRef{Class: s.Class, Tenant: s.Tenant, Version: v}, uri, err, nil)
}

// epochFloor is the highest epoch of scope this process has seen: a state
// read after this call must not be older.
func (k *Keyring) epochFloor(s envelope.Scope) uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.epochs[s]
}

// verify checks a scope state read from the store (or handed to an
// update) before anything uses it: the invariants, the MAC under the
// class key, the epoch against floor (the highest this process had seen
// when the read started) and against the cached state, and the class key
// itself. It returns the class's MAC key, or nil for a class without a
// class key whose use the configuration allows. Every failure is audited
// as keyring.tamper, except an unsealed store (ErrUnsealed).
func (k *Keyring) verify(ctx context.Context, op string, st *ScopeState, floor uint64) ([]byte, error) {
	s := st.Scope
	tamper := func(reason string, errs ...error) error {
		err := scopeErr(op, s, k.classURI(s.Class), reason, append([]error{envelope.ErrKeyUnavailable, ErrTampered}, errs...)...)
		k.emitTamper(ctx, s, 0, "", err)
		return err
	}
	if err := st.Check(); err != nil {
		return nil, tamper("stored state breaks the keyring's invariants", err)
	}
	var home *ScopeState
	if s.Tenant == "" {
		home = st
	}
	macKey, err := k.classMAC(ctx, s.Class, home)
	if errors.Is(err, errNoClassKey) {
		return nil, k.verifyUnsealed(ctx, op, st, floor, tamper)
	}
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.sealedClasses[s.Class] = true
	k.mu.Unlock()
	if len(st.MAC) == 0 {
		switch {
		case st.Epoch == 0 && floor > 0:
			return nil, tamper(fmt.Sprintf("the scope lost its MAC and epoch (this process saw epoch %d): deleted or replaced", floor))
		case st.empty():
			return macKey, nil // never written
		case k.allowUnsealed:
			k.warnUnsealed(ctx, s)
			return macKey, nil
		}
		return nil, tamper("no MAC in a sealed class: removed by a store writer, or 'fieldcrypt keys upgrade' was interrupted (re-run it)")
	}
	if !hmac.Equal(st.MAC, k.stateMAC(macKey, st)) {
		return nil, tamper("MAC does not verify: the state was changed outside the keyring")
	}
	if st.Epoch < floor {
		return nil, tamper(fmt.Sprintf("epoch %d is older than epoch %d this process saw: rolled back", st.Epoch, floor))
	}
	k.mu.RLock()
	prev := k.scopes[s]
	k.mu.RUnlock()
	if prev != nil && prev.st.sealed() {
		switch {
		case prev.st.Epoch == st.Epoch && !bytes.Equal(prev.st.MAC, st.MAC):
			return nil, tamper(fmt.Sprintf("two different states with epoch %d", st.Epoch))
		case prev.st.Epoch < st.Epoch:
			if err := checkTransition(prev.st, st); err != nil {
				return nil, tamper(fmt.Sprintf("illegal change since epoch %d", prev.st.Epoch), err)
			}
		}
	}
	return macKey, nil
}

// verifyUnsealed decides about a state of a class that has no class key:
// tampering if anything says the class was sealed, refused (ErrUnsealed)
// if it holds keys and the configuration does not allow unsealed stores.
func (k *Keyring) verifyUnsealed(ctx context.Context, op string, st *ScopeState, floor uint64, tamper func(string, ...error) error) error {
	s := st.Scope
	k.mu.RLock()
	sealedBefore := k.sealedClasses[s.Class]
	k.mu.RUnlock()
	switch {
	case st.sealed():
		return tamper("the scope is sealed but its class has no class key: the class key was deleted")
	case sealedBefore || floor > 0:
		return tamper("the class key disappeared (this process saw the class sealed)")
	case len(st.Records) == 0:
		return nil // never written
	}
	if sealed, err := k.sealedElsewhere(ctx, s.Class); err != nil {
		return err
	} else if sealed {
		return tamper("the class has no class key but other scopes of it are sealed: the class key was deleted")
	}
	if !k.allowUnsealed {
		return scopeErr(op, s, k.classURI(s.Class), unsealedReason, envelope.ErrKeyUnavailable, ErrUnsealed)
	}
	k.warnUnsealed(ctx, s)
	return nil
}

// sealedElsewhere reports whether any scope of class c carries a MAC or a
// class key. The answer is cached for StateRefresh: it is asked about
// unsealed classes only.
func (k *Keyring) sealedElsewhere(ctx context.Context, c envelope.Class) (bool, error) {
	now := k.now()
	k.mu.RLock()
	at, checked := k.unsealedChecked[c]
	k.mu.RUnlock()
	if checked && now.Sub(at) < k.refresh {
		return false, nil
	}
	k.stats.storeReads.Add(1)
	all, err := k.store.ListScopes(ctx)
	if err != nil {
		return false, scopeErr("lookup", envelope.Scope{Class: c}, k.classURI(c), "list scopes", envelope.ErrKeyUnavailable, err)
	}
	for _, st := range all {
		if st.Scope.Class == c && (st.sealed() || st.ClassKey != nil) {
			return true, nil
		}
	}
	k.mu.Lock()
	k.unsealedChecked[c] = now
	k.mu.Unlock()
	return false, nil
}

// warnUnsealed audits, once per scope and process, that an unsealed state
// was used under Config.AllowUnsealedStore.
func (k *Keyring) warnUnsealed(ctx context.Context, s envelope.Scope) {
	k.mu.Lock()
	seen := k.unsealedWarned[s]
	k.unsealedWarned[s] = true
	k.mu.Unlock()
	if !seen {
		k.emit(ctx, audit.KeyringUnsealed, envelope.KEKRef{Class: s.Class, Tenant: s.Tenant}, "", nil, nil)
	}
}

// update changes scope s through the store: fn gets the stored state once
// it is verified (a tampered state is never built on), and what fn leaves
// is sealed (epoch + 1, MAC) before the store writes it. It returns the
// state written (or found, if fn changed nothing), already cached.
func (k *Keyring) update(ctx context.Context, op string, s envelope.Scope, fn func(*ScopeState) error) (*ScopeState, error) {
	switch macKey, err := k.sealingKey(ctx, s.Class); {
	case err != nil:
		return nil, err
	case macKey == nil && !k.allowUnsealed:
		// Never write what this keyring would refuse to read.
		return nil, scopeErr(op, s, k.classURI(s.Class), unsealedReason, envelope.ErrKeyUnavailable, ErrUnsealed)
	}
	floor := k.epochFloor(s)
	var final *ScopeState
	err := k.store.UpdateScope(ctx, s, func(st *ScopeState) error {
		final = nil
		macKey, err := k.verify(ctx, op, st, floor)
		if err != nil {
			return err
		}
		before := st.Clone()
		if err := fn(st); err != nil {
			return err
		}
		st.Scope = s
		if !sameState(before, st) {
			k.seal(st, before.Epoch, macKey)
		}
		final = st
		return nil
	})
	if err != nil {
		return nil, k.opErr(op, s, "", err)
	}
	final = final.Clone()
	k.setScope(s, final, k.now())
	return final, nil
}

// seal sets st's epoch to one past prev and its MAC; without a MAC key
// (an unsealed class in the migration window) it leaves st unsealed.
func (k *Keyring) seal(st *ScopeState, prev uint64, macKey []byte) {
	if macKey == nil {
		st.Epoch, st.MAC = 0, nil
		return
	}
	st.Epoch = prev + 1
	st.MAC = k.stateMAC(macKey, st)
}

// sameState reports whether two states are identical in every stored field.
func sameState(a, b *ScopeState) bool {
	if !slices.Equal(a.Search, b.Search) || len(a.Records) != len(b.Records) || a.Epoch != b.Epoch || !bytes.Equal(a.MAC, b.MAC) {
		return false
	}
	if (a.ClassKey == nil) != (b.ClassKey == nil) {
		return false
	}
	if a.ClassKey != nil && (a.ClassKey.MasterKeyURI != b.ClassKey.MasterKeyURI || !bytes.Equal(a.ClassKey.Wrapped, b.ClassKey.Wrapped) || !a.ClassKey.CreatedAt.Equal(b.ClassKey.CreatedAt)) {
		return false
	}
	for i := range a.Records {
		if !sameRecord(a.Records[i], b.Records[i]) {
			return false
		}
	}
	return true
}

func sameRecord(x, y Record) bool {
	return x.Version == y.Version && x.State == y.State && x.WrappedBy == y.WrappedBy && x.MasterKeyURI == y.MasterKeyURI && bytes.Equal(x.Wrapped, y.Wrapped) &&
		x.CreatedAt.Equal(y.CreatedAt) && x.UpdatedAt.Equal(y.UpdatedAt) && x.DemotedAt.Equal(y.DemotedAt) && x.DestroyedAt.Equal(y.DestroyedAt)
}
