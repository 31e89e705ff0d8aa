package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

func (a *app) keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage KEKs: list, rotate, rewrap, retire, destroy, census, shred, upgrade",
		Long: `keys manages the key-encryption keys (KEKs) of the keyring. Each class (and,
for tenant-scoped classes, each tenant) has versions 1..n: one active
(primary), older ones decrypt-only, then retired (reversible), then destroyed
(crypto-shredded, irreversible).

The safe path to get rid of an old key:
  keys rotate  ->  reencrypt  ->  keys census  ->  keys retire  ->  keys destroy
Retire and destroy wait until no running process can still use the version
as its primary: keyring.MaxStateAge + DemotionSlack (3 minutes) after the
rotation ('keys list' shows IN USE UNTIL).`,
		Example: `  fieldcrypt keys list
  fieldcrypt keys rotate --class critical
  fieldcrypt keys census
  fieldcrypt keys retire --class critical --version 1
  fieldcrypt keys destroy --class critical --version 1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.keysListCmd(), a.keysRotateCmd(), a.keysRewrapCmd(), a.keysRetireCmd(),
		a.keysDestroyCmd(), a.keysCensusCmd(), a.keysShredCmd(), a.keysUpgradeCmd())
	return cmd
}

func (a *app) keysListCmd() *cobra.Command {
	var class string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every KEK version with its state and master key",
		Example: `  fieldcrypt keys list
  fieldcrypt keys list --class critical -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var only envelope.Class
			if class != "" {
				c, err := parseEncryptedClass(class)
				if err != nil {
					return err
				}
				only = c
			}
			op, err := a.operator(ctx, false)
			if err != nil {
				return err
			}
			infos, err := op.Keyring.List(ctx)
			if err != nil {
				return err
			}
			out := []keyring.KEKInfo{}
			for _, i := range infos {
				if only == 0 || i.Ref.Class == only {
					out = append(out, i)
				}
			}
			return a.emit(out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "CLASS\tTENANT\tVERSION\tSTATE\tSEARCH\tMASTER KEY\tCREATED\tDESTROYED\tIN USE UNTIL")
				for _, k := range out {
					search, destroyed, tenant, inUse := "", "", dash(k.Ref.Tenant), ""
					if until := k.InUseUntil(); until.After(op.Now()) {
						inUse = until.UTC().Format(time.RFC3339)
					}
					if k.SearchRank > 0 {
						search = fmt.Sprintf("#%d", k.SearchRank)
					}
					if !k.DestroyedAt.IsZero() {
						destroyed = k.DestroyedAt.UTC().Format(time.RFC3339)
					}
					state := string(k.State)
					if k.Primary {
						state += " (primary)"
					}
					wrappedBy := k.MasterKeyURI
					if k.WrappedBy == keyring.WrapClassKey {
						wrappedBy = "(class key)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Ref.Class, tenant, k.Ref.Version, state, search, wrappedBy, k.CreatedAt.UTC().Format(time.RFC3339), destroyed, inUse)
				}
				tw.Flush()
				if len(out) == 0 {
					fmt.Fprintln(w, "(no KEKs: run 'fieldcrypt init')")
				}
			})
		},
	}
	cmd.Flags().StringVar(&class, "class", "", "only this class")
	return cmd
}

func parseEncryptedClass(s string) (envelope.Class, error) {
	c, err := envelope.ParseClass(s)
	if err != nil || !c.Encrypted() {
		return 0, usageErrorf("--class %q: want critical, high, moderate or low", s)
	}
	return c, nil
}

// classesArg returns the classes a command acts on: --class, or with --all
// every configured class.
func (a *app) classesArg(cfg *config.Config, class string, all bool) ([]envelope.Class, error) {
	switch {
	case class != "" && all:
		return nil, usageErrorf("give --class or --all, not both")
	case class != "":
		c, err := parseEncryptedClass(class)
		if err != nil {
			return nil, err
		}
		if _, ok := cfg.Classes[c.String()]; !ok {
			return nil, usageErrorf("class %s is not configured (no master key)", c)
		}
		return []envelope.Class{c}, nil
	case all:
		return cfg.EncryptedClasses(), nil
	}
	return nil, usageErrorf("give --class CLASS or --all")
}

func (a *app) keysRotateCmd() *cobra.Command {
	var class string
	var all, search, finishSearch, force bool
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Start a new primary KEK version (old values stay readable); rotate search keys",
		Long: `rotate creates a new KEK version, wrapped under the class's master key, and
makes it the primary: new values are sealed under it. The previous primary
becomes decrypt-only, so every existing value stays readable. Other running
processes pick the new primary up within their state refresh (30 s by
default) plus one read, and never later than 2 minutes.
Then run 'fieldcrypt reencrypt' to move existing values to the new version.

Search keys (deterministic values and blind indexes derive from them) do not
change with a rotation, and a live search key can be neither retired nor
destroyed. To move them:
  --search          the current primary becomes the first search key; older
                    search keys stay live so equality queries still match
  (re-encrypt deterministic columns with 'reencrypt --full', and have the
   application run gormcrypt.RebuildBlindIndexes for blind index columns)
  --finish-search   drop the older search keys; refused (exit 5) while a
                    census finds deterministic values under them (--force)`,
		Example: `  fieldcrypt keys rotate --class critical
  fieldcrypt keys rotate --all
  fieldcrypt keys rotate --class high --tenant acme
  fieldcrypt keys rotate --class high --search && fieldcrypt reencrypt --column users.email --full && fieldcrypt keys rotate --class high --finish-search`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if search && finishSearch {
				return usageErrorf("give --search or --finish-search, not both")
			}
			op, err := a.operator(ctx, false)
			if err != nil {
				return err
			}
			classes, err := a.classesArg(op.Config, class, all)
			if err != nil {
				return err
			}
			if search || finishSearch {
				out, err := op.RotateSearch(ctx, classes, finishSearch, force)
				if err != nil {
					return err
				}
				if finishSearch {
					a.note("note: blind index columns cannot be checked by census: make sure the application ran gormcrypt.RebuildBlindIndexes under the first search key")
				}
				return a.emit(out, func(w io.Writer) {
					for _, r := range out {
						fmt.Fprintf(w, "%s: search keys are now %v (first: used for new values)\n", scopeName(r.Class, r.Tenant), r.SearchVersions)
					}
				})
			}
			out, err := op.Rotate(ctx, classes) // the keyring records kek.rotated
			if err != nil {
				return err
			}
			return a.emit(out, func(w io.Writer) {
				for _, k := range out {
					fmt.Fprintf(w, "rotated %s: primary is now v%d\n", k.Ref.Scope(), k.Ref.Version)
				}
				fmt.Fprintln(w, "Next: 'fieldcrypt reencrypt' moves existing values to the new version.")
			})
		},
	}
	cmd.Flags().StringVar(&class, "class", "", "class to rotate")
	cmd.Flags().BoolVar(&all, "all", false, "rotate every configured class")
	cmd.Flags().BoolVar(&search, "search", false, "make the current primary the first search key (start a search-key rotation)")
	cmd.Flags().BoolVar(&finishSearch, "finish-search", false, "drop the older search keys (end a search-key rotation)")
	cmd.Flags().BoolVar(&force, "force", false, "with --finish-search: even if deterministic values still use older search keys")
	return cmd
}

func (a *app) keysRewrapCmd() *cobra.Command {
	var class, to string
	var createKey, noWrite bool
	cmd := &cobra.Command{
		Use:   "rewrap",
		Short: "Master key rotation: move every KEK of a class under a new master key",
		Long: `rewrap unwraps every KEK version of a class (all tenants), and the class key,
under the master key it is stored under and wraps it under --to. It touches
no data: O(number of KEKs) KMS calls. It is resumable: re-running it skips
what is done.

Before running it, add --to to classes.<class>.previous_master_keys in the
configuration of every running application: the keyring unwraps only under
master keys its configuration lists, so a process that does not trust --to
yet refuses the KEKs moved under it (exit 4) until it gets the new
configuration.

On success the config file's classes.<class>.master_key is updated to --to
and the old master key is moved to previous_master_keys (comments kept),
unless the master key came from the environment or a flag, or
--no-write-config is given; then rewrap says what to change. Keep the old
master key enabled, and listed, until the new configuration is deployed
everywhere and a re-run reports 0 rewrapped.`,
		Example: `  fieldcrypt keys rewrap --class critical --to aws-kms://arn:aws:kms:eu-west-1:111122223333:key/0987dcba-...
  fieldcrypt keys rewrap --class low --to local://.fieldcrypt/master-low-2.key --create-key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if to == "" {
				return usageErrorf("--to URI is required")
			}
			op, err := a.operator(ctx, false)
			if err != nil {
				return err
			}
			classes, err := a.classesArg(op.Config, class, false)
			if err != nil {
				return err
			}
			res, err := op.Rewrap(ctx, classes[0], to, ops.RewrapOptions{CreateKey: createKey, NoWriteConfig: noWrite, Note: func(m string) { a.note("%s", m) }})
			if err != nil {
				return err
			}
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "class %s: %d KEK versions rewrapped under %s (%d already there, %d destroyed)\n", res.Class, res.Rewrapped, res.To, res.AlreadyDone, res.Destroyed)
				if res.UnderClassKey+res.MovedToClassKey > 0 {
					fmt.Fprintf(w, "  tenant KEK versions under the class key: %d (moved with it), %d moved there now\n", res.UnderClassKey, res.MovedToClassKey)
				}
				if res.ConfigUpdated != "" {
					fmt.Fprintf(w, "updated classes.%s.master_key (old one now in previous_master_keys) in %s\n", res.Class, res.ConfigUpdated)
				}
				if res.Action != "" {
					fmt.Fprintf(w, "ACTION NEEDED: %s\n", res.Action)
				}
				fmt.Fprintln(w, "Keep the old master key enabled until every process runs with the new configuration.")
			})
		},
	}
	cmd.Flags().StringVar(&class, "class", "", "class whose master key changes (required)")
	cmd.Flags().StringVar(&to, "to", "", "URI of the new master key (required)")
	cmd.Flags().BoolVar(&createKey, "create-key", false, "create --to if it is a local:// key file that does not exist")
	cmd.Flags().BoolVar(&noWrite, "no-write-config", false, "do not update the config file")
	return cmd
}

type refFlags struct {
	class   string
	version uint32
}

func (r *refFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.class, "class", "", "class of the KEK (required)")
	cmd.Flags().Uint32Var(&r.version, "version", 0, "KEK version (required)")
}

// ref opens the operator and returns the KEK version the flags name (in
// the configured tenant's scope for a tenant-scoped class).
func (a *app) ref(ctx context.Context, r refFlags) (*ops.Operator, envelope.KEKRef, error) {
	op, err := a.operator(ctx, false)
	if err != nil {
		return nil, envelope.KEKRef{}, err
	}
	if r.class == "" || r.version == 0 {
		return nil, envelope.KEKRef{}, usageErrorf("--class and --version are required")
	}
	c, err := parseEncryptedClass(r.class)
	if err != nil {
		return nil, envelope.KEKRef{}, err
	}
	s := op.Scope(c)
	return op, envelope.KEKRef{Class: c, Tenant: s.Tenant, Version: r.version}, nil
}

func (a *app) keysRetireCmd() *cobra.Command {
	var r refFlags
	var undo, force, yes bool
	cmd := &cobra.Command{
		Use:   "retire",
		Short: "Stop a decrypt-only KEK version from opening values (reversible)",
		Long: `retire makes a decrypt-only version refuse to open values, without destroying
it. Watch for failures (census, application errors); undo with --undo. Only
then destroy it. The primary and live search keys cannot be retired.

It refuses (exit 5, naming the time left) until every running process has
stopped using the version as its primary: 3 minutes after the rotation that
demoted it (keyring.MaxStateAge + DemotionSlack). --force retires at once,
after confirmation: values such a process seals meanwhile will not open until
the version is reactivated.`,
		Example: `  fieldcrypt keys retire --class critical --version 1
  fieldcrypt keys retire --class critical --version 1 --undo`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			op, ref, err := a.ref(ctx, r)
			if err != nil {
				return err
			}
			k, err := op.Retire(ctx, ref, ops.RetireOptions{Undo: undo, Force: force, Confirm: a.confirm(yes)})
			if err != nil {
				return err
			}
			return a.emit(k, func(w io.Writer) {
				fmt.Fprintf(w, "%s v%d is now %s\n", k.Ref.Scope(), k.Ref.Version, k.State)
			})
		},
	}
	r.add(cmd)
	cmd.Flags().BoolVar(&undo, "undo", false, "reactivate a retired version (back to decrypt-only)")
	cmd.Flags().BoolVar(&force, "force", false, "retire even if a running process may still use it as its primary (asks for confirmation)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "with --force: do not ask for confirmation (scripts)")
	return cmd
}

func scopeName(class, tenant string) string {
	if tenant == "" {
		return class
	}
	return class + "/tenant=" + tenant
}
