package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

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

// Shred crypto-shreds a tenant: every KEK version of every scope of the
// tenant, in every class (keyring.ShredTenant, which records kek.destroyed
// per version and tenant.shredded), and returns the shred report, also
// written to ReportPath.
func (o *Operator) Shred(ctx context.Context, tenant string, opts ShredOptions) (*ShredReport, error) {
	if err := opts.Confirm.ask(ctx, fmt.Sprintf("Shred tenant %q? All of its encrypted data becomes unreadable forever.", tenant), tenant); err != nil {
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
	if opts.ReportPath != "" {
		if err := WriteNewFile(opts.ReportPath, out); err != nil {
			return out, fmt.Errorf("tenant shredded, but writing the report failed: %w", err)
		}
		out.ReportFile = opts.ReportPath
	}
	return out, nil
}

// WriteNewFile writes v as indented JSON to a new file (mode 0600), synced;
// it never replaces an existing file.
func WriteNewFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
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
