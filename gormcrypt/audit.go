package gormcrypt

import (
	"context"
	"errors"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// WithAudit makes the plugin record audit events on the read path:
//
//   - decrypt.failed for every value that fails authentication or names a
//     destroyed or unknown key (possible tampering), with table, column,
//     row and KEK version;
//   - decrypt.access for every value decrypted, for teams that must show
//     who read what. Wrap the sink in audit.Sampled(sink, rate) to keep a
//     fraction of them (rate 0 keeps none, failures are always kept).
//
// Events never contain values:
//
//	db.Use(gormcrypt.New(kr, gormcrypt.WithAudit(audit.Sampled(sink, 0.01))))
func WithAudit(sink audit.Sink) Option { return func(p *Plugin) { p.audit = sink } }

// WithAudit sets the audit sink and returns p.
//
// Deprecated: use New(keys, WithAudit(sink)), the options style of the
// other constructors; kept for one release.
func (p *Plugin) WithAudit(sink audit.Sink) *Plugin {
	WithAudit(sink)(p)
	return p
}

// opened records the outcome of one Open when auditing is on.
func (p *Plugin) opened(ctx context.Context, b envelope.Binding, ct []byte, err error) {
	if p.audit == nil {
		return
	}
	e := audit.Event{
		Type:   audit.DecryptAccess,
		Class:  b.Class.String(),
		Tenant: b.Tenant,
		Table:  b.Table,
		Column: b.Column,
		Row:    b.Row,
	}
	if h, herr := envelope.Inspect(ct); herr == nil {
		e.KEKVersion = h.KEKVersion
	}
	if err != nil {
		if !errors.Is(err, envelope.ErrAuthentication) && !errors.Is(err, envelope.ErrKeyDestroyed) &&
			!errors.Is(err, envelope.ErrUnknownKey) && !errors.Is(err, envelope.ErrMalformed) {
			return // key unavailable, cancelled: operational, not tampering
		}
		e.Type, e.Outcome, e.Error = audit.DecryptFailed, audit.Error, err.Error()
	}
	p.audit.Record(ctx, e)
}
