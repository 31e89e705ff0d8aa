package cli

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/audit"
)

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify, report on and review the chained audit log (audit_chain)",
		Example: `  fieldcrypt audit verify
  fieldcrypt audit report --since 14d
  fieldcrypt audit review --since 14d --note "fortnightly access review"`,
		Args: noArgs,
	}
	cmd.AddCommand(a.auditVerifyCmd(), a.auditReportCmd(), a.auditReviewCmd())
	return cmd
}

func (a *app) auditVerifyCmd() *cobra.Command {
	var partial, onlyGiven bool
	cmd := &cobra.Command{
		Use:   "verify [FILE...]",
		Short: "Check every record's MAC and link across rotated files, and the log against its checkpoints",
		Long: `verify checks chained audit log files (default: those of audit_chain.path):
each record's MAC under the log's key (unwrapped by the KMS), each record's
link to the one before, across rotated files given in any order, and each log
against the checkpoints stored apart from it. It names the first bad record
and exits 3 on tampering. See docs/audit.md for what is and is not detected.`,
		Example: `  fieldcrypt audit verify
  fieldcrypt audit verify /var/log/fieldcrypt/audit.jsonl* -o json
  fieldcrypt audit verify --allow-partial-start --only-given archive/audit.jsonl.*`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := a.config(false)
			if err != nil {
				return err
			}
			files, err := cfg.AuditFiles(a.io.Dir, args)
			if err != nil {
				return err
			}
			vo, err := a.verifyOptions(ctx, cfg)
			if err != nil {
				return err
			}
			vo.AllowPartialStart, vo.OnlyGivenLogs = partial, onlyGiven
			res, err := audit.Verify(ctx, files, vo)
			if err != nil && res.Problem == nil {
				return err
			}
			if eerr := a.emit(res, func(w io.Writer) { _ = res.WriteText(w) }); eerr != nil {
				return eerr
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&partial, "allow-partial-start", false, "accept a log whose oldest files were removed by retention")
	cmd.Flags().BoolVar(&onlyGiven, "only-given", false, "accept that logs with checkpoints have no file among those given")
	return cmd
}
