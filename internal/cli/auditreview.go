package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

func (a *app) auditReviewCmd() *cobra.Command {
	var f reportFlags
	var reviewer, note string
	cmd := &cobra.Command{
		Use:   "review [FILE...]",
		Short: "Record that a reviewer looked at the accesses a report selects",
		Long: `review builds the report the same flags select (see 'audit report') and records,
in the configured chained log, one audit.reviewed event per log: the reviewer
(a person), the note, the selection, and the first and last records it covers.
Later reports show those accesses as reviewed, so "every access was reviewed"
can be shown from the log itself.`,
		Example: `  fieldcrypt audit review --since 14d --note "fortnightly review: every read matches a ticket"
  fieldcrypt audit review --actor support:jane --reviewer auditor:kim --note "checked tickets 4711-4790" -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, cfg, err := a.report(cmd, args, &f)
			if err != nil {
				return err
			}
			if cfg.AuditChain == nil {
				return usageErrorf("audit review records into the chained log: configure audit_chain")
			}
			who := cfg.ActorValue()
			if reviewer != "" {
				who = audit.Person(reviewer)
			}
			evs, err := audit.MarkReviewed(cmd.Context(), a.auditSink(), rep, who, note)
			switch {
			case errors.Is(err, audit.ErrInvalidReview), errors.Is(err, audit.ErrNothingToReview):
				return usageErrorf("%w", err)
			case err != nil:
				return fielderr.Errorf(errRefused, "%w", err)
			}
			if err := audit.FlushSink(a.auditSink()); err != nil {
				return fielderr.Errorf(errRefused, "the review could not be written: %w", err)
			}
			return a.emit(evs, func(w io.Writer) {
				for _, e := range evs {
					fmt.Fprintf(w, "reviewed by %s: log %s records %d to %d (%d accesses): %s\n",
						e.Actor, e.Job, e.Counts["from_seq"], e.Counts["to_seq"], e.Counts["records"], e.Note)
				}
			})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&reviewer, "reviewer", "", "the reviewer, a person (default: the actor running the command)")
	cmd.Flags().StringVar(&note, "note", "", "what was checked and found (required)")
	return cmd
}
