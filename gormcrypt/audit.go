package gormcrypt

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// Accountable access: who read what, and why.
//
// The actor and the purpose of a read travel in its context
// (audit.WithActor, audit.WithPurpose; a web handler sets them once per
// request). Each class has an access policy (audit.Policy): which decrypts
// are recorded as decrypt.access events and who must state a purpose. The
// default (audit.DefaultPolicy) records every decrypt and requires a
// purpose when a person reads critical data.
//
// A read that needs a purpose and has none fails as a whole before any
// value of that class is decrypted, with an error wrapping
// ErrPurposeRequired and audit.ErrPurposeRequired; its destination is
// emptied and one decrypt.refused event records the refusal. The policy is
// checked on every read path that decrypts: a model read before the query
// runs (for the model's own fields), decrypted result rows (Find into a
// map, Scan, Pluck, Row, Rows, Raw) once the result's columns are known
// and before any row is read, and every value again just before it is
// opened (joined relations).

// ErrPurposeRequired means a read needed a stated purpose (audit.WithPurpose)
// and had none: nothing of the class was decrypted. The error also wraps
// audit.ErrPurposeRequired.
var ErrPurposeRequired = fielderr.New(fielderr.Refused, "gormcrypt: purpose required")

// ErrAuditUnavailable means the class's policy records every decrypt and
// the audit sink reports that it cannot record (audit.SinkErr): the read
// is refused rather than left unrecorded.
var ErrAuditUnavailable = fielderr.New(fielderr.Refused, "gormcrypt: audit log unavailable")

// WithAudit sends the plugin's read-path audit events to sink:
//
//   - decrypt.access for each value decrypted, as the class's access
//     policy says (WithAccessPolicy; by default every one);
//   - decrypt.failed for every value that fails authentication or names a
//     destroyed or unknown key (possible tampering), with table, column,
//     row and KEK version;
//   - decrypt.refused for each read refused for want of a purpose.
//
// Events carry the actor and purpose of the read's context and never
// contain values:
//
//	db.Use(gormcrypt.New(kr, gormcrypt.WithAudit(chain)))
//
// Wrapping sink in audit.Sampled still works but samples every class
// alike; prefer a sampled policy (WithAccessPolicy) for the classes that
// allow it.
func WithAudit(sink audit.Sink) Option { return func(p *Plugin) { p.audit = sink } }

// WithAudit sets the audit sink and returns p.
//
// Deprecated: use New(keys, WithAudit(sink)), the options style of the
// other constructors; kept for one release.
func (p *Plugin) WithAudit(sink audit.Sink) *Plugin {
	WithAudit(sink)(p)
	return p
}

// WithAccessPolicy sets the access policy of the classes ps lists (the
// others keep audit.DefaultPolicy). An invalid policy makes db.Use fail:
//
//	gormcrypt.New(kr, gormcrypt.WithAudit(chain), gormcrypt.WithAccessPolicy(audit.Policies{
//		"high": {Record: audit.RecordSampled, SampleRate: 0.01},
//		"low":  {Record: audit.RecordNone},
//	}))
func WithAccessPolicy(ps audit.Policies) Option {
	return func(p *Plugin) {
		p.policyErr = ps.Validate()
		p.setPolicies(ps)
	}
}

// WithAccessPolicy sets the access policy and returns p.
//
// Deprecated: use New(keys, WithAccessPolicy(ps)); kept for one release.
func (p *Plugin) WithAccessPolicy(ps audit.Policies) *Plugin {
	WithAccessPolicy(ps)(p)
	return p
}

func (p *Plugin) setPolicies(ps audit.Policies) {
	p.policiesSet = true
	for _, c := range envelope.Classes() {
		p.policies[c] = ps.For(c.String())
	}
}

func (p *Plugin) policyOf(c envelope.Class) audit.Policy {
	if int(c) < len(p.policies) {
		return p.policies[c]
	}
	return audit.DefaultPolicy(c.String())
}

// admit checks, before a read decrypts anything, that every field it may
// decrypt can be read in ctx: a purpose where the policy requires one, a
// working audit sink where the policy records every decrypt. A refusal is
// recorded (decrypt.refused) and returned as an *Error.
func (p *Plugin) admit(ctx context.Context, fields []*cfield) error {
	for _, cf := range fields {
		if cf == nil {
			continue
		}
		if err := p.admitField(ctx, cf); err != nil {
			return err
		}
	}
	return nil
}

// admitValue is the check just before one value is opened: the purpose
// only (the statement-level check, admit, has seen the sink).
func (p *Plugin) admitValue(ctx context.Context, cf *cfield) error {
	pol := p.policyOf(cf.Class)
	if err := pol.Permit(ctx, cf.Class.String()); err != nil {
		return p.refuse(ctx, cf, ErrPurposeRequired, err)
	}
	return nil
}

func (p *Plugin) admitField(ctx context.Context, cf *cfield) error {
	pol := p.policyOf(cf.Class)
	if err := pol.Permit(ctx, cf.Class.String()); err != nil {
		return p.refuse(ctx, cf, ErrPurposeRequired, err)
	}
	if pol.Record == audit.RecordAll && p.audit != nil {
		if err := audit.SinkErr(p.audit); err != nil {
			return p.refuse(ctx, cf, ErrAuditUnavailable, fmt.Errorf("the policy of class %s records every decrypt: %w", cf.Class, err))
		}
	}
	return nil
}

// refuse records a refused read and returns its error.
func (p *Plugin) refuse(ctx context.Context, cf *cfield, kind, cause error) error {
	if p.audit != nil {
		e := audit.Event{Type: audit.DecryptRefused, Outcome: audit.Error, Class: cf.Class.String(), Tenant: tenantOf(ctx),
			Table: cf.Table, Column: cf.Column, Error: cause.Error()}
		p.audit.Record(ctx, audit.Attribute(ctx, e))
	}
	return cf.fail("decrypt", "", kind, cause)
}

// selectedFields returns the fields of pl a statement reads: all of them,
// or those its Select names (by column or field name).
func selectedFields(pl *plan, selects, omits []string) []*cfield {
	if pl == nil {
		return nil
	}
	if len(selects) == 0 && len(omits) == 0 {
		return pl.fields
	}
	names := func(list []string) map[string]bool {
		m := map[string]bool{}
		for _, s := range list {
			for _, part := range strings.Split(s, ",") {
				m[strings.ToLower(strings.Trim(strings.TrimSpace(part), "`\"[]"))] = true
			}
		}
		return m
	}
	sel, om := names(selects), names(omits)
	out := make([]*cfield, 0, len(pl.fields))
	for _, cf := range pl.fields {
		col, name := strings.ToLower(cf.Column), strings.ToLower(cf.Name)
		if om[col] || om[name] {
			continue
		}
		if len(sel) == 0 || sel["*"] || sel[col] || sel[name] || sel[strings.ToLower(cf.Table)+"."+col] || sel[strings.ToLower(cf.Table)+".*"] {
			out = append(out, cf)
		}
	}
	return out
}

// opened records the outcome of one Open when auditing is on: a
// decrypt.failed for a value that fails authentication, a decrypt.access
// when the class's policy records this one.
func (p *Plugin) opened(ctx context.Context, b envelope.Binding, ct []byte, err error) {
	if p.audit == nil {
		return
	}
	if err == nil && !p.policyOf(b.Class).Records() {
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
	p.audit.Record(ctx, audit.Attribute(ctx, e))
}
