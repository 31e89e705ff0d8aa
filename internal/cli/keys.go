package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
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
			kr, err := a.keyring(ctx, false)
			if err != nil {
				return err
			}
			infos, err := kr.List(ctx)
			if err != nil {
				return err
			}
			out := []kekJSON{}
			for _, i := range infos {
				if only == 0 || i.Ref.Class == only {
					out = append(out, kekOf(i))
				}
			}
			return a.emit(out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "CLASS\tTENANT\tVERSION\tSTATE\tSEARCH\tMASTER KEY\tCREATED\tDESTROYED\tIN USE UNTIL")
				now := a.now()
				for _, k := range out {
					search, destroyed, tenant, inUse := "", "", k.Tenant, ""
					if k.InUseUntil != nil && k.InUseUntil.After(now) {
						inUse = k.InUseUntil.Format(time.RFC3339)
					}
					if k.SearchRank > 0 {
						search = fmt.Sprintf("#%d", k.SearchRank)
					}
					if k.DestroyedAt != nil {
						destroyed = k.DestroyedAt.Format(time.RFC3339)
					}
					if tenant == "" {
						tenant = "-"
					}
					state := k.State
					if k.Primary {
						state += " (primary)"
					}
					wrappedBy := k.MasterKeyURI
					if k.WrappedBy == keyring.WrapClassKey.String() {
						wrappedBy = "(class key)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Class, tenant, k.Version, state, search, wrappedBy, k.CreatedAt.Format(time.RFC3339), destroyed, inUse)
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
func (a *app) classesArg(cfg *Config, class string, all bool) ([]envelope.Class, error) {
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
			kr, err := a.keyring(ctx, false)
			if err != nil {
				return err
			}
			classes, err := a.classesArg(a.cfg, class, all)
			if err != nil {
				return err
			}
			type searchResult struct {
				Class          string   `json:"class"`
				Tenant         string   `json:"tenant,omitempty"`
				SearchVersions []uint32 `json:"search_versions"`
			}
			if search || finishSearch {
				out := []searchResult{}
				for _, c := range classes {
					scope := envelope.Scope{Class: c, Tenant: a.cfg.Tenant}
					if !a.cfg.Classes[c.String()].TenantScoped {
						scope.Tenant = ""
					}
					var vs []uint32
					if search {
						vs, err = kr.RotateSearch(ctx, scope)
					} else {
						if err = a.checkSearchFinished(ctx, kr, scope, force); err == nil {
							vs, err = kr.FinishSearchRotation(ctx, scope)
						}
					}
					ev := audit.Event{Type: audit.KEKRotated, Class: c.String(), Tenant: scope.Tenant, Counts: map[string]int64{"search_rotation": 1}}
					if finishSearch {
						ev.Counts = map[string]int64{"search_rotation_finished": 1}
					}
					if len(vs) > 0 {
						ev.KEKVersion = vs[0]
					}
					a.record(ctx, ev, err)
					if err != nil {
						return err
					}
					out = append(out, searchResult{Class: c.String(), Tenant: scope.Tenant, SearchVersions: vs})
				}
				return a.emit(out, func(w io.Writer) {
					for _, r := range out {
						fmt.Fprintf(w, "%s: search keys are now %v (first: used for new values)\n", scopeName(r.Class, r.Tenant), r.SearchVersions)
					}
				})
			}
			out := []kekJSON{}
			for _, c := range classes {
				info, err := kr.Rotate(ctx, envelope.Scope{Class: c, Tenant: a.cfg.Tenant}) // records kek.rotated
				if err != nil {
					return err
				}
				out = append(out, kekOf(info))
			}
			return a.emit(out, func(w io.Writer) {
				for _, k := range out {
					fmt.Fprintf(w, "rotated %s: primary is now v%d\n", scopeName(k.Class, k.Tenant), k.Version)
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

// checkSearchFinished refuses to end a search-key rotation while a census
// (headers only) finds deterministic values of the scope under a search key
// other than the first.
func (a *app) checkSearchFinished(ctx context.Context, kr *keyring.Keyring, scope envelope.Scope, force bool) error {
	infos, err := kr.List(ctx)
	if err != nil {
		return err
	}
	first := uint32(0)
	for _, i := range infos {
		if i.Ref.Scope() == scope && i.SearchRank == 1 {
			first = i.Ref.Version
		}
	}
	db, err := a.openDB(ctx)
	if err != nil {
		return err
	}
	res, err := a.census(ctx, db, kr, a.cfg, censusOptions{Class: scope.Class})
	if err != nil {
		return err
	}
	var stale int64
	for _, v := range res.Versions {
		if v.Suite == "deterministic" && v.Tenant == scope.Tenant && v.Version != first {
			stale += v.Count
		}
	}
	if stale > 0 && !force {
		return fmt.Errorf("%w: census found %d deterministic values of %s under older search keys: run 'fieldcrypt reencrypt --full' on those columns first (or --force)", errRefused, stale, scope)
	}
	a.note("note: blind index columns cannot be checked by census: make sure the application ran gormcrypt.RebuildBlindIndexes under search key v%d", first)
	return nil
}

type rewrapResult struct {
	Class       string   `json:"class"`
	From        []string `json:"from"`
	To          string   `json:"to"`
	Rewrapped   int      `json:"rewrapped"`
	AlreadyDone int      `json:"already_done"`
	Destroyed   int      `json:"destroyed"`
	// Tenant KEK versions wrapped by the class key: they move with it.
	UnderClassKey int `json:"under_class_key"`
	// Tenant KEK versions that were wrapped by the old master key and are
	// now wrapped by the class key.
	MovedToClassKey int    `json:"moved_to_class_key"`
	ConfigUpdated   string `json:"config_updated,omitempty"` // the file whose master_key was changed
	Action          string `json:"action,omitempty"`         // what the operator must still do
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
			kr, err := a.keyring(ctx, false)
			if err != nil {
				return err
			}
			classes, err := a.classesArg(a.cfg, class, false)
			if err != nil {
				return err
			}
			c := classes[0]
			if err := keyring.CheckMasterKeyURI(to); err != nil {
				return err
			}
			if path := a.localKeyPath(to); path != "" && createKey {
				if _, err := os.Stat(path); err != nil {
					if _, err := localkms.Create(path); err != nil {
						return err
					}
					a.note("created local master key %s", path)
				}
			}
			fileURI := a.fileMasterKey(c)
			rep, err := kr.RewrapAll(ctx, c, a.cfg.CanonicalURI(to)) // records kek.rewrapped
			if err != nil {
				return err
			}
			res := rewrapResult{Class: c.String(), From: rep.From, To: to, Rewrapped: rep.Rewrapped, AlreadyDone: rep.AlreadyDone, Destroyed: rep.Destroyed,
				UnderClassKey: rep.UnderClassKey, MovedToClassKey: rep.MovedToClassKey}
			if res.From == nil {
				res.From = []string{}
			}
			current := a.cfg.Classes[c.String()].MasterKey
			switch {
			case current == to:
			case noWrite || a.cfg.Path == "" || fileURI != current:
				res.Action = fmt.Sprintf("set the master key of class %s to %s in your configuration (it is %s now) and list %s under its previous_master_keys", c, to, current, current)
			default:
				if err := updateConfigMasterKey(a.cfg.Path, c.String(), to); err != nil {
					res.Action = fmt.Sprintf("could not update %s (%v): set classes.%s.master_key to %s and add %s to its previous_master_keys yourself", a.cfg.Path, err, c, to, current)
				} else {
					res.ConfigUpdated = a.cfg.Path
				}
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

// fileMasterKey returns the master key of class as the config file says
// (before env and flags), or "".
func (a *app) fileMasterKey(c envelope.Class) string {
	if a.cfg == nil || a.cfg.Path == "" {
		return ""
	}
	data, err := os.ReadFile(a.cfg.Path)
	if err != nil {
		return ""
	}
	var fc Config
	if decodeConfig(data, &fc) != nil {
		return ""
	}
	return fc.Classes[c.String()].MasterKey
}

type refFlags struct {
	class   string
	version uint32
}

func (r *refFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.class, "class", "", "class of the KEK (required)")
	cmd.Flags().Uint32Var(&r.version, "version", 0, "KEK version (required)")
}

func (a *app) ref(r refFlags) (envelope.KEKRef, error) {
	if r.class == "" || r.version == 0 {
		return envelope.KEKRef{}, usageErrorf("--class and --version are required")
	}
	c, err := parseEncryptedClass(r.class)
	if err != nil {
		return envelope.KEKRef{}, err
	}
	tenant := a.cfg.Tenant
	if !a.cfg.Classes[c.String()].TenantScoped {
		tenant = ""
	}
	return envelope.KEKRef{Class: c, Tenant: tenant, Version: r.version}, nil
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
			kr, err := a.keyring(ctx, false)
			if err != nil {
				return err
			}
			ref, err := a.ref(r)
			if err != nil {
				return err
			}
			var info keyring.KEKInfo
			switch {
			case undo:
				// The keyring records no event for a reactivation: the CLI does.
				info, err = kr.Reactivate(ctx, ref)
				a.record(ctx, audit.Event{Type: audit.KEKRetired, Class: ref.Class.String(), Tenant: ref.Tenant, KEKVersion: ref.Version,
					MasterKeyURI: info.MasterKeyURI, Counts: map[string]int64{"reactivated": 1}}, err)
			case force:
				what := fmt.Sprintf("Retire KEK %s?", ref)
				if until := a.inUseUntil(ctx, kr, ref); until != "" {
					what = fmt.Sprintf("Retire KEK %s now? A running process may still seal new values under it until %s; they will not open until you reactivate it.", ref, until)
				}
				if err = a.confirm(ctx, yes, what, ref.String()); err == nil {
					info, err = kr.Retire(ctx, ref, keyring.Force()) // records kek.retired
				}
			default:
				info, err = kr.Retire(ctx, ref) // records kek.retired
			}
			if err != nil {
				return err
			}
			k := kekOf(info)
			return a.emit(k, func(w io.Writer) {
				fmt.Fprintf(w, "%s v%d is now %s\n", scopeName(k.Class, k.Tenant), k.Version, k.State)
			})
		},
	}
	r.add(cmd)
	cmd.Flags().BoolVar(&undo, "undo", false, "reactivate a retired version (back to decrypt-only)")
	cmd.Flags().BoolVar(&force, "force", false, "retire even if a running process may still use it as its primary (asks for confirmation)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "with --force: do not ask for confirmation (scripts)")
	return cmd
}

// inUseUntil says until when a running process may still seal under ref
// (for a confirmation prompt), or "" if none may.
func (a *app) inUseUntil(ctx context.Context, kr *keyring.Keyring, ref envelope.KEKRef) string {
	infos, err := kr.List(ctx)
	if err != nil {
		return "an unknown time (" + err.Error() + ")"
	}
	for _, i := range infos {
		if until := i.InUseUntil(); i.Ref == ref && until.After(a.now()) {
			return until.UTC().Format(time.RFC3339)
		}
	}
	return ""
}
