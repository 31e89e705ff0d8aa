package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/keyring"
)

// ShredReport is the evidence of a tenant's erasure: what was destroyed,
// when, by whom, in which keyring and database.
type ShredReport struct {
	Report           string            `json:"report"` // "fieldcrypt tenant shred report v1"
	Tenant           string            `json:"tenant"`
	Keyring          string            `json:"keyring"`
	Database         string            `json:"database"`
	At               time.Time         `json:"at"`
	Actor            string            `json:"actor"`
	Host             string            `json:"host"`
	Destroyed        []keyring.KEKInfo `json:"destroyed"`
	AlreadyDestroyed []string          `json:"already_destroyed"`
	Scopes           []string          `json:"scopes"`
	Statement        string            `json:"statement"`
	ReportFile       string            `json:"report_file,omitempty"`
}

// ShredOptions tune Shred.
type ShredOptions struct {
	// ReportPath, if set, is a new file the report is written to (JSON,
	// mode 0600).
	ReportPath string
	// Confirm is asked before anything is destroyed.
	Confirm Confirm
}

// ErrUnknownTenant means a tenant has no keys in the keyring (a typo, or
// another keyring). Its kind is fielderr.InvalidInput.
var ErrUnknownTenant = fielderr.New(fielderr.InvalidInput, "unknown tenant")

// ErrReportFile means the shred report cannot be written where asked (the
// file exists, or its directory does not). Its kind is
// fielderr.InvalidInput.
var ErrReportFile = fielderr.New(fielderr.InvalidInput, "cannot write the shred report")

// Shred crypto-shreds a tenant: every KEK version of every scope of the
// tenant, in every class (keyring.ShredTenant, which records kek.destroyed
// per version and tenant.shredded), and returns the shred report, also
// written to ReportPath. Every precondition is checked before anything is
// destroyed: the tenant has keys (else ErrUnknownTenant), the report file
// can be created (else ErrReportFile: it is created, empty, first), and
// Confirm agrees. Should writing the report fail afterwards, the report is
// returned with the error.
func (o *Operator) Shred(ctx context.Context, tenant string, opts ShredOptions) (_ *ShredReport, err error) {
	infos, err := o.Keyring.List(ctx)
	if err != nil {
		return nil, err
	}
	known := false
	for _, i := range infos {
		known = known || i.Ref.Tenant == tenant
	}
	if !known {
		return nil, fielderr.Errorf(ErrUnknownTenant, "tenant %q has no keys in keyring %q: nothing to shred (check the name)", tenant, o.Config.Keyring)
	}
	var report *os.File
	if opts.ReportPath != "" {
		if report, err = os.OpenFile(opts.ReportPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return nil, fielderr.Errorf(ErrReportFile, "shred report %s: %w (nothing was destroyed)", opts.ReportPath, err)
		}
		defer func() {
			if report != nil { // not written: leave no empty report behind
				report.Close()
				os.Remove(opts.ReportPath)
			}
		}()
	}
	q := Question{Action: fmt.Sprintf("shredding tenant %q", tenant), Prompt: fmt.Sprintf("Shred tenant %q? All of its encrypted data becomes unreadable forever.", tenant), Answer: tenant}
	if err := opts.Confirm.ask(ctx, q); err != nil {
		return nil, err
	}
	rep, err := o.Keyring.ShredTenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	out := &ShredReport{
		Report: "fieldcrypt tenant shred report v1", Tenant: tenant, Keyring: o.Config.Keyring, Database: o.DSN.Redacted,
		At: rep.At.UTC(), Actor: o.Config.ActorName(), Host: host,
		Destroyed: []keyring.KEKInfo{}, AlreadyDestroyed: []string{}, Scopes: []string{},
	}
	out.Destroyed = append(out.Destroyed, rep.Destroyed...)
	for _, r := range rep.AlreadyDestroyed {
		out.AlreadyDestroyed = append(out.AlreadyDestroyed, r.String())
	}
	for _, s := range rep.Scopes {
		out.Scopes = append(out.Scopes, s.String())
	}
	out.Statement = fmt.Sprintf("All %d key-encryption key versions of tenant %q in keyring %q were destroyed (wrapped keys deleted) by %s at %s; data encrypted under them cannot be decrypted.",
		len(out.Destroyed)+len(out.AlreadyDestroyed), tenant, out.Keyring, out.Actor, out.At.Format(time.RFC3339))
	if len(out.Scopes) == 0 {
		out.Statement = fmt.Sprintf("Tenant %q has no keys in keyring %q: nothing to destroy.", tenant, out.Keyring)
	}
	if report != nil {
		f := report
		report = nil
		if err := writeJSON(f, out); err != nil {
			return out, fmt.Errorf("tenant shredded, but writing the report to %s failed: %w", opts.ReportPath, err)
		}
		out.ReportFile = opts.ReportPath
	}
	return out, nil
}

// writeJSON writes v as indented JSON to f, syncs and closes it.
func writeJSON(f *os.File, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
