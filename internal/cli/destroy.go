package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
)

type destroyResult struct {
	KEK          kekJSON `json:"kek"`
	ValuesFound  int64   `json:"values_found"` // values census found under the version
	Forced       bool    `json:"forced"`
	CheckedItems int     `json:"columns_checked"`
}

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
			kr, err := a.keyring(ctx, false)
			if err != nil {
				return err
			}
			ref, err := a.ref(r)
			if err != nil {
				return err
			}
			db, err := a.openDB(ctx)
			if err != nil {
				return err
			}
			res := destroyResult{Forced: force}
			for _, c := range a.cfg.Columns {
				if c.ClassValue() == ref.Class {
					res.CheckedItems++
				}
			}
			check := func(ctx context.Context, ref envelope.KEKRef) error {
				if res.CheckedItems == 0 {
					if force {
						a.note("warning: no configured column of class %s: cannot check for data under %s", ref.Class, ref)
						return nil
					}
					return fmt.Errorf("%w: no configured column of class %s, so nothing can be checked: list your columns in the config, or pass --force", errRefused, ref.Class)
				}
				cres, err := a.census(ctx, db, kr, a.cfg, censusOptions{Class: ref.Class, BatchSize: batch})
				if err != nil {
					return err
				}
				for _, v := range cres.Versions {
					if v.Version == ref.Version && v.Tenant == ref.Tenant {
						res.ValuesFound += v.Count
					}
				}
				if res.ValuesFound > 0 {
					if force {
						a.note("warning: %d values are still under %s and will be unreadable (--force)", res.ValuesFound, ref)
						return nil
					}
					return fmt.Errorf("%w: census found %d values still under %s: run 'fieldcrypt reencrypt' first (or --force to lose them)", errRefused, res.ValuesFound, ref)
				}
				return nil
			}
			name := ref.String()
			inUse := ""
			if force {
				inUse = a.inUseUntil(ctx, kr, ref)
			}
			confirmCheck := func(ctx context.Context, ref envelope.KEKRef) error {
				what := fmt.Sprintf("Destroy KEK %s? Values under it become unreadable forever.", name)
				if res.ValuesFound > 0 {
					what = fmt.Sprintf("Destroy KEK %s? %d values are still under it and will be LOST.", name, res.ValuesFound)
				}
				if inUse != "" {
					what += fmt.Sprintf(" A running process may still seal new values under it until %s: they will be LOST too.", inUse)
				}
				return a.confirm(ctx, yes, what, name)
			}
			// The keyring records kek.destroyed; the check's findings ride along.
			extra := map[string]int64{"values_found": 0}
			a.auditExtra = map[audit.Type]map[string]int64{audit.KEKDestroyed: extra}
			check0 := check
			check = func(ctx context.Context, ref envelope.KEKRef) error {
				err := check0(ctx, ref)
				extra["values_found"] = res.ValuesFound
				if force {
					extra["forced"] = 1
				}
				return err
			}
			opts := []keyring.DestroyOption{keyring.WithDestroyCheck(check), keyring.WithDestroyCheck(confirmCheck)}
			if force { // only with the confirmation above
				opts = append(opts, keyring.Force())
			}
			info, err := kr.Destroy(ctx, ref, opts...)
			if err != nil {
				return err
			}
			res.KEK = kekOf(info)
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "destroyed %s (tombstone kept; %d values were under it)\n", name, res.ValuesFound)
			})
		},
	}
	r.add(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "destroy even if values are still under the version, or a running process may still use it as its primary")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (scripts)")
	cmd.Flags().IntVar(&batch, "batch-size", 1000, "rows per census query")
	return cmd
}
