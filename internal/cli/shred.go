package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
)

type shredReport struct {
	Report           string    `json:"report"` // "fieldcrypt tenant shred report v1"
	Tenant           string    `json:"tenant"`
	Keyring          string    `json:"keyring"`
	Database         string    `json:"database"`
	At               time.Time `json:"at"`
	Actor            string    `json:"actor"`
	Host             string    `json:"host"`
	Destroyed        []kekJSON `json:"destroyed"`
	AlreadyDestroyed []string  `json:"already_destroyed"`
	Scopes           []string  `json:"scopes"`
	Statement        string    `json:"statement"`
	ReportFile       string    `json:"report_file,omitempty"`
}

func (a *app) keysShredCmd() *cobra.Command {
	var yes bool
	var reportPath string
	cmd := &cobra.Command{
		Use:   "shred",
		Short: "Crypto-shred a tenant: destroy all its KEKs and print a shred report",
		Long: `shred destroys every KEK version of every scope of a tenant (all classes),
primary and search keys included: all of the tenant's encrypted data becomes
unreadable, for good, in the database and in every backup of it. It prints
a shred report (what, when, by whom) as evidence of erasure; --report FILE
also writes it as JSON (mode 0600). It asks for confirmation (--yes in
scripts). Stop the tenant's traffic first.`,
		Example: `  fieldcrypt keys shred --tenant acme
  fieldcrypt keys shred --tenant acme --yes --report acme-shred.json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			kr, err := a.keyring(ctx, false)
			if err != nil {
				return err
			}
			tenant := a.cfg.Tenant
			if tenant == "" {
				return usageErrorf("--tenant is required")
			}
			if err := a.confirm(ctx, yes, fmt.Sprintf("Shred tenant %q? All of its encrypted data becomes unreadable forever.", tenant), tenant); err != nil {
				return err
			}
			rep, err := kr.ShredTenant(ctx, tenant) // records kek.destroyed per version and tenant.shredded
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			out := shredReport{
				Report: "fieldcrypt tenant shred report v1", Tenant: tenant, Keyring: a.cfg.Keyring, Database: a.dsn.Redacted,
				At: rep.At.UTC(), Actor: a.actorName(), Host: host,
				Destroyed: []kekJSON{}, AlreadyDestroyed: []string{}, Scopes: []string{},
			}
			for _, d := range rep.Destroyed {
				out.Destroyed = append(out.Destroyed, kekOf(d))
			}
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
			if reportPath != "" {
				path := resolvePath(a.io.Dir, reportPath)
				if err := writeJSONFile(path, out); err != nil {
					return fmt.Errorf("tenant shredded, but writing the report failed: %w", err)
				}
				out.ReportFile = path
			}
			return a.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "SHRED REPORT  tenant %q  keyring %q  database %s\n", out.Tenant, out.Keyring, out.Database)
				fmt.Fprintf(w, "at %s by %s on %s\n", out.At.Format(time.RFC3339), out.Actor, out.Host)
				for _, d := range out.Destroyed {
					fmt.Fprintf(w, "  destroyed %s v%d (master key %s)\n", scopeName(d.Class, d.Tenant), d.Version, d.MasterKeyURI)
				}
				for _, r := range out.AlreadyDestroyed {
					fmt.Fprintf(w, "  already destroyed %s\n", r)
				}
				fmt.Fprintln(w, out.Statement)
				if out.ReportFile != "" {
					fmt.Fprintf(w, "report written to %s\n", out.ReportFile)
				}
			})
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (scripts)")
	cmd.Flags().StringVar(&reportPath, "report", "", "also write the shred report to FILE (JSON, mode 0600)")
	return cmd
}
