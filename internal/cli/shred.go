package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

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
			op, err := a.operator(ctx, false)
			if err != nil {
				return err
			}
			tenant := op.Config.Tenant
			if tenant == "" {
				return usageErrorf("--tenant is required")
			}
			if reportPath != "" {
				reportPath = config.ResolvePath(a.io.Dir, reportPath)
			}
			out, err := op.Shred(ctx, tenant, ops.ShredOptions{ReportPath: reportPath, Confirm: a.confirm(yes)})
			if out == nil {
				return err
			}
			// The keys are gone: print the report even if writing it failed.
			return errors.Join(err, a.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "SHRED REPORT  tenant %q  keyring %q  database %s\n", out.Tenant, out.Keyring, out.Database)
				fmt.Fprintf(w, "at %s by %s on %s\n", out.At.Format(time.RFC3339), out.Actor, out.Host)
				for _, d := range out.Destroyed {
					fmt.Fprintf(w, "  destroyed %s v%d (master key %s)\n", d.Ref.Scope(), d.Ref.Version, d.MasterKeyURI)
				}
				for _, r := range out.AlreadyDestroyed {
					fmt.Fprintf(w, "  already destroyed %s\n", r)
				}
				fmt.Fprintln(w, out.Statement)
				if out.ReportFile != "" {
					fmt.Fprintf(w, "report written to %s\n", out.ReportFile)
				}
			}))
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (scripts)")
	cmd.Flags().StringVar(&reportPath, "report", "", "also write the shred report to FILE (JSON, mode 0600)")
	return cmd
}
