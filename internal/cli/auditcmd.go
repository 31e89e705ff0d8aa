package cli

import (
	"fmt"
	"io"
	"time"

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

type verifyJSON struct {
	*audit.VerifyResult
	OK          bool    `json:"ok"`
	DurationS   float64 `json:"duration_s"`
	RecordsPerS float64 `json:"records_per_s"`
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
			files, err := a.auditFiles(cfg, args)
			if err != nil {
				return err
			}
			vo, err := a.verifyOptions(ctx, cfg)
			if err != nil {
				return err
			}
			vo.AllowPartialStart, vo.OnlyGivenLogs = partial, onlyGiven
			start := time.Now()
			res, err := audit.Verify(ctx, files, vo)
			if res == nil || err != nil && res.Problem == nil {
				return err
			}
			d := time.Since(start).Seconds()
			out := verifyJSON{VerifyResult: res, OK: err == nil, DurationS: round2(d), RecordsPerS: float64(int64(float64(res.Records) / max(d, 1e-9)))}
			if eerr := a.emit(out, func(w io.Writer) { writeVerify(w, out) }); eerr != nil {
				return eerr
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&partial, "allow-partial-start", false, "accept a log whose oldest files were removed by retention")
	cmd.Flags().BoolVar(&onlyGiven, "only-given", false, "accept that logs with checkpoints have no file among those given")
	return cmd
}

func writeVerify(w io.Writer, v verifyJSON) {
	for _, l := range v.Logs {
		fmt.Fprintf(w, "log %s (key under %s): %d files, records %d to %d\n", l.Log, l.MasterKeyURI, len(l.Files), l.FirstSeq, l.LastSeq)
		switch {
		case l.Checkpoint != nil:
			fmt.Fprintf(w, "  checkpoint: record %d at %s; %d newer records are not vouched for yet\n", l.Checkpoint.Seq, l.Checkpoint.At.Format(time.RFC3339), l.Unvouched)
		default:
			fmt.Fprintf(w, "  no checkpoint: removing the newest records would go unnoticed\n")
		}
		if l.TornTail {
			fmt.Fprintf(w, "  the newest file ends in an incomplete line (a crash while writing; dropped by the next writer)\n")
		}
	}
	if v.Problem != nil {
		fmt.Fprintf(w, "TAMPERED: %s\n", v.Problem.String())
		return
	}
	fmt.Fprintf(w, "OK: %d records verified in %.2fs (%.0f records/s)\n", v.Records, v.DurationS, v.RecordsPerS)
}
