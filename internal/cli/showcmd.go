package cli

import (
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/console"
)

func (a *app) showCmd() *cobra.Command {
	var where, reason string
	var reveal []string
	var limit int
	cmd := &cobra.Command{
		Use:   "show TABLE",
		Short: "Rows as the database holds them, encrypted values as metadata; --reveal with a --reason",
		Long: `show prints rows of TABLE with every encrypted value as metadata from its
header ([critical v2, 41 B, row-bound]), never its content. --where finds rows
by equality, also on deterministic and blind-indexed columns; its value is
never printed or recorded. --reveal COLUMN --reason TEXT decrypts that column
for those rows, one decrypt.access event per value (actor, reason; never the
value), and refuses (exit 5) without a reason or an audit log. See
docs/console.md.`,
		Example: `  fieldcrypt show patients --limit 5
  fieldcrypt show patients --where ssn=078-05-1120
  fieldcrypt show patients --where id=0b8e3c8e-6a52-4f8e-9a39-4c1f0e7d2a11 --reveal notes --reason "ticket 4711" -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("show takes one TABLE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := a.config(false)
			if err != nil {
				return err
			}
			q := console.Query{Table: args[0], Limit: limit, Tenant: cfg.Tenant}
			if where != "" {
				col, val, ok := strings.Cut(where, "=")
				if !ok || col == "" {
					return usageErrorf("--where: want COLUMN=VALUE")
				}
				q.Where = &console.Condition{Column: col, Value: val}
			}
			db, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			cc := console.Config{Columns: cfg.ConsoleColumns()}
			if len(reveal) > 0 || q.Where != nil && cfg.IsEncrypted(q.Table, q.Where.Column) {
				op, err := a.operator(ctx, false)
				if err != nil {
					return err
				}
				cc.Keys = op.Keyring
			}
			if cfg.AuditLog != "" || cfg.AuditChain != nil {
				cc.Audit = a.auditSink()
			}
			c, err := console.NewGorm(db, cc)
			if err != nil {
				return err
			}
			ctx = audit.WithActor(ctx, cfg.ActorValue())
			var res *console.Result
			if len(reveal) > 0 {
				res, err = c.Reveal(ctx, q, reveal, reason)
			} else {
				res, err = c.Show(ctx, q)
			}
			if res != nil {
				if eerr := a.emit(res, func(w io.Writer) { _ = res.WriteText(w) }); eerr != nil {
					return eerr
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&where, "where", "", "COLUMN=VALUE: rows whose COLUMN equals VALUE (deterministic and blind-indexed columns too)")
	cmd.Flags().IntVar(&limit, "limit", 20, "at most this many rows (1 to 1000)")
	cmd.Flags().StringArrayVar(&reveal, "reveal", nil, "decrypt this encrypted column for the rows shown (repeatable; needs --reason)")
	cmd.Flags().StringVar(&reason, "reason", "", "why the values are revealed (a ticket, an incident); recorded with each value")
	return cmd
}
