package keyring

import (
	"context"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// WithAudit sends the keyring's audit events (KEK created, rotated,
// rewrapped, retired, destroyed, tenant shredded, master-key unwraps) to
// sink. The default is audit.Discard.
func WithAudit(sink audit.Sink) Option {
	return func(k *Keyring) {
		if sink != nil {
			k.audit = sink
		}
	}
}

// emit records one event about ref; err decides the outcome.
func (k *Keyring) emit(ctx context.Context, typ audit.Type, ref envelope.KEKRef, uri string, err error, counts map[string]int64) {
	if k.audit == nil {
		return
	}
	e := audit.Event{
		Type:         typ,
		Class:        ref.Class.String(),
		Tenant:       ref.Tenant,
		KEKVersion:   ref.Version,
		MasterKeyURI: uri,
		Counts:       counts,
	}
	if !ref.Class.Valid() {
		e.Class = ""
	}
	if err != nil {
		e.Outcome, e.Error = audit.Error, err.Error()
	}
	k.audit.Record(ctx, e)
}
