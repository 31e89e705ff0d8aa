package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/ops"
)

func (a *app) keysDestroyCmd() *cobra.Command {
	var r refFlags
	var force, yes bool
	var batch int
	cmd := &cobra.Command{
		Use:   "destroy",
		Short: "Crypto-shred a KEK version (irreversible); refuses while data uses it",
		Long: `destroy deletes the wrapped key of a KEK version and keeps a tombstone: every
value still under that version becomes unreadable, for good.

It refuses (exit 5, naming the time left) until every running process has
stopped using the version as its primary: 3 minutes after the rotation that
demoted it (keyring.MaxStateAge + DemotionSlack; 'keys list' shows IN USE
UNTIL). A process that still held it would go on sealing values under a key
that no longer exists.

Before destroying, it runs a census (headers only) of the configured columns
and refuses (exit 5) while any value is under the version. With --force it
destroys anyway, at once: values still under the version, and values a
running process seals under it before its next keyring read, are lost. With
no columns configured it cannot check and refuses unless --force is given.

It always asks for confirmation: on a terminal you type the key's name; in
scripts pass --yes. Without a terminal and without --yes it refuses (exit 5).
The primary and live search keys are never destroyed.`,
		Example: `  fieldcrypt keys destroy --class critical --version 1
  fieldcrypt keys destroy --class critical --version 1 --yes            # scripts
  fieldcrypt keys destroy --class critical --version 1 --force --yes    # even if data remains`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			op, ref, err := a.ref(ctx, r)
			if err != nil {
				return err
			}
			res, err := op.Destroy(ctx, ref, ops.DestroyOptions{Force: force, BatchSize: batch, Confirm: a.confirm(yes), Warn: func(m string) { a.note("%s", m) }})
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "destroyed %s (tombstone kept; %d values were under it)\n", ref, res.ValuesFound)
			})
		},
	}
	r.add(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "destroy even if values are still under the version, or a running process may still use it as its primary")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (scripts)")
	cmd.Flags().IntVar(&batch, "batch-size", 1000, "rows per census query")
	return cmd
}
