package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) keysUpgradeCmd() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Seal a keyring written before keyrings were sealed (once, vouching for its state)",
		Long: `upgrade seals a keyring created by an earlier fieldcrypt: for every configured
class it creates a class key (wrapped by the class's master key) and
authenticates every scope's state under it (a MAC and an epoch), as the
state is now. From then on a store writer without KMS access cannot add,
revive, promote or roll back a KEK version without the keyring refusing it.

It first adds the columns sealing needs to the keyring tables (like init;
the other commands refuse tables without them). Until it runs, fieldcrypt
and applications refuse the unsealed keyring
(exit 4) unless allow_unsealed_store is set in their configuration (the
migration window). Run it once, from a trusted host, after checking
'fieldcrypt keys list': you vouch that nobody tampered with the keyring
before. It refuses to vouch for a version under a master key the
configuration does not list (add it to previous_master_keys if it is yours)
and for sealed state that fails verification (exit 3). Records stored under
the relative local:// paths of an earlier 'init' are moved to the absolute
path of the same key file. Tenant KEKs still wrapped by the master key (an
earlier fieldcrypt wrapped each in the KMS) move under the class key: one
KMS call each, once; afterwards a process unwraps them without any. It is
idempotent: re-running it finishes an
interrupted run. It asks for confirmation; in scripts pass --yes.`,
		Example: `  fieldcrypt keys list
  fieldcrypt keys upgrade
  fieldcrypt keys upgrade --yes -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			op, err := a.operator(ctx, true) // adds the columns sealing needs
			if err != nil {
				return err
			}
			out, err := op.Upgrade(ctx, a.confirm(yes)) // records keyring.sealed per class
			if err != nil {
				return err
			}
			return a.emit(out, func(w io.Writer) {
				for _, u := range out {
					var what []string
					if u.ClassKeyCreated {
						what = append(what, "class key created")
					}
					if len(u.Sealed) > 0 {
						what = append(what, fmt.Sprintf("sealed %s", strings.Join(u.Sealed, ", ")))
					}
					if u.AlreadySealed > 0 {
						what = append(what, fmt.Sprintf("%d scopes already sealed", u.AlreadySealed))
					}
					if u.Renamed > 0 {
						what = append(what, fmt.Sprintf("%d versions moved to the absolute master key path", u.Renamed))
					}
					if u.MovedToClassKey > 0 {
						what = append(what, fmt.Sprintf("%d tenant KEK versions moved under the class key", u.MovedToClassKey))
					}
					if len(what) == 0 {
						what = append(what, "nothing to do")
					}
					fmt.Fprintf(w, "%s: %s\n", u.Class, strings.Join(what, "; "))
				}
				fmt.Fprintln(w, "Now remove allow_unsealed_store from every configuration.")
			})
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (scripts)")
	return cmd
}
