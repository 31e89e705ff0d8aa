package ops

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// Rotate starts a new primary KEK version of the scope of each class (the
// configured tenant in tenant-scoped classes). The keyring records
// kek.rotated.
func (o *Operator) Rotate(ctx context.Context, classes []envelope.Class) ([]keyring.KEKInfo, error) {
	out := []keyring.KEKInfo{}
	for _, c := range classes {
		info, err := o.Keyring.Rotate(ctx, envelope.Scope{Class: c, Tenant: o.Config.Tenant})
		if err != nil {
			return out, err
		}
		out = append(out, info)
	}
	return out, nil
}

// SearchKeys are the live search key versions of a scope, newest first.
type SearchKeys struct {
	Class          string   `json:"class"`
	Tenant         string   `json:"tenant,omitempty"`
	SearchVersions []uint32 `json:"search_versions"`
}

// RotateSearch makes the current primary the first search key of each
// class's scope (older search keys stay live); FinishSearch (finish true)
// drops the older ones, refused (ErrRefused) while a census finds
// deterministic values of the scope under them, unless force. Each scope's
// change is recorded as kek.rotated with counts.search_rotation or
// search_rotation_finished.
func (o *Operator) RotateSearch(ctx context.Context, classes []envelope.Class, finish, force bool) ([]SearchKeys, error) {
	out := []SearchKeys{}
	for _, c := range classes {
		scope := o.Scope(c)
		var vs []uint32
		var err error
		ev := audit.Event{Type: audit.KEKRotated, Class: c.String(), Tenant: scope.Tenant, Counts: map[string]int64{"search_rotation": 1}}
		if finish {
			ev.Counts = map[string]int64{"search_rotation_finished": 1}
			if err = o.checkSearchFinished(ctx, scope, force); err == nil {
				vs, err = o.Keyring.FinishSearchRotation(ctx, scope)
			}
		} else {
			vs, err = o.Keyring.RotateSearch(ctx, scope)
		}
		if len(vs) > 0 {
			ev.KEKVersion = vs[0]
		}
		o.record(ctx, ev, err)
		if err != nil {
			return out, err
		}
		out = append(out, SearchKeys{Class: c.String(), Tenant: scope.Tenant, SearchVersions: vs})
	}
	return out, nil
}

// checkSearchFinished refuses to end a search-key rotation while a census
// (headers only) finds deterministic values of the scope under a search key
// other than the first.
func (o *Operator) checkSearchFinished(ctx context.Context, scope envelope.Scope, force bool) error {
	infos, err := o.Keyring.List(ctx)
	if err != nil {
		return err
	}
	first := uint32(0)
	for _, i := range infos {
		if i.Ref.Scope() == scope && i.SearchRank == 1 {
			first = i.Ref.Version
		}
	}
	res, err := o.Census(ctx, CensusOptions{Class: scope.Class})
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
		return fielderr.Errorf(ErrRefused, "census found %d deterministic values of %s under older search keys: run 'fieldcrypt reencrypt --full' on those columns first (or --force)", stale, scope)
	}
	return nil
}

// RetireOptions tune Retire.
type RetireOptions struct {
	Undo    bool    // reactivate a retired version instead
	Force   bool    // retire even if a running process may still use it as its primary
	Confirm Confirm // asked before a forced retire
}

// Retire retires a decrypt-only version (reversible), or reactivates it
// with Undo. Forced, it asks Confirm first. The keyring records
// kek.retired; a reactivation is recorded here (kek.retired with
// counts.reactivated).
func (o *Operator) Retire(ctx context.Context, ref envelope.KEKRef, opts RetireOptions) (keyring.KEKInfo, error) {
	switch {
	case opts.Undo:
		info, err := o.Keyring.Reactivate(ctx, ref)
		o.record(ctx, audit.Event{Type: audit.KEKRetired, Class: ref.Class.String(), Tenant: ref.Tenant, KEKVersion: ref.Version,
			MasterKeyURI: info.MasterKeyURI, Counts: map[string]int64{"reactivated": 1}}, err)
		return info, err
	case opts.Force:
		what := fmt.Sprintf("Retire KEK %s?", ref)
		if until := o.InUseUntil(ctx, ref); until != "" {
			what = fmt.Sprintf("Retire KEK %s now? A running process may still seal new values under it until %s; they will not open until you reactivate it.", ref, until)
		}
		if err := opts.Confirm.ask(ctx, Question{Action: "retiring KEK " + ref.String(), Prompt: what, Answer: ref.String()}); err != nil {
			return keyring.KEKInfo{}, err
		}
		return o.Keyring.Retire(ctx, ref, keyring.Force())
	}
	return o.Keyring.Retire(ctx, ref)
}

// DestroyOptions tune Destroy.
type DestroyOptions struct {
	// Force destroys even if values are still under the version, or a
	// running process may still use it as its primary (after Confirm).
	Force bool
	// BatchSize is the census's rows per query.
	BatchSize int
	// Confirm is always asked, after the checks and before the destroy.
	Confirm Confirm
	// Warn, if set, receives what a forced destroy loses.
	Warn func(msg string)
}

// DestroyResult is what Destroy did.
type DestroyResult struct {
	KEK            keyring.KEKInfo `json:"kek"`
	ValuesFound    int64           `json:"values_found"` // values census found under the version
	Forced         bool            `json:"forced"`
	ColumnsChecked int             `json:"columns_checked"`
}

// Destroy crypto-shreds a KEK version after its preconditions: a census of
// the configured columns of its class finds no value under it (with no
// such column nothing can be checked and it refuses), and Confirm agrees.
// Force destroys anyway, after Confirm. The keyring records kek.destroyed,
// with counts.values_found (and forced).
func (o *Operator) Destroy(ctx context.Context, ref envelope.KEKRef, opts DestroyOptions) (*DestroyResult, error) {
	res := &DestroyResult{Forced: opts.Force}
	if err := o.notDestroyed(ctx, ref); err != nil {
		return nil, err
	}
	warn := func(format string, args ...any) {
		if opts.Warn != nil {
			opts.Warn(fmt.Sprintf(format, args...))
		}
	}
	for _, c := range o.Config.Columns {
		if c.ClassValue() == ref.Class {
			res.ColumnsChecked++
		}
	}
	check := func(ctx context.Context, ref envelope.KEKRef) error {
		if res.ColumnsChecked == 0 {
			if opts.Force {
				warn("warning: no configured column of class %s: cannot check for data under %s", ref.Class, ref)
				return nil
			}
			return fielderr.Errorf(ErrRefused, "no configured column of class %s, so nothing can be checked: list your columns in the config, or pass --force", ref.Class)
		}
		cres, err := o.Census(ctx, CensusOptions{Class: ref.Class, BatchSize: opts.BatchSize})
		if err != nil {
			return err
		}
		for _, v := range cres.Versions {
			if v.Version == ref.Version && v.Tenant == ref.Tenant {
				res.ValuesFound += v.Count
			}
		}
		if res.ValuesFound > 0 {
			if opts.Force {
				warn("warning: %d values are still under %s and will be unreadable (--force)", res.ValuesFound, ref)
				return nil
			}
			return fielderr.Errorf(ErrRefused, "census found %d values still under %s: run 'fieldcrypt reencrypt' first (or --force to lose them)", res.ValuesFound, ref)
		}
		return nil
	}
	inUse := ""
	if opts.Force {
		inUse = o.InUseUntil(ctx, ref)
	}
	confirm := func(ctx context.Context, ref envelope.KEKRef) error {
		what := fmt.Sprintf("Destroy KEK %s? Values under it become unreadable forever.", ref)
		if res.ValuesFound > 0 {
			what = fmt.Sprintf("Destroy KEK %s? %d values are still under it and will be LOST.", ref, res.ValuesFound)
		}
		if inUse != "" {
			what += fmt.Sprintf(" A running process may still seal new values under it until %s: they will be LOST too.", inUse)
		}
		return opts.Confirm.ask(ctx, Question{Action: "destroying KEK " + ref.String(), Prompt: what, Answer: ref.String()})
	}
	// A check's own error says it all: the keyring's wrapping would only
	// repeat that a check refused.
	var checkErr error
	check0, confirm0 := check, confirm
	check = func(ctx context.Context, ref envelope.KEKRef) error { checkErr = check0(ctx, ref); return checkErr }
	confirm = func(ctx context.Context, ref envelope.KEKRef) error { checkErr = confirm0(ctx, ref); return checkErr }
	counts := func() map[string]int64 {
		m := map[string]int64{"values_found": res.ValuesFound}
		if opts.Force {
			m["forced"] = 1
		}
		return m
	}
	kopts := []keyring.DestroyOption{keyring.WithDestroyCheck(check), keyring.WithDestroyCheck(confirm), keyring.WithAuditCounts(counts)}
	if opts.Force { // only with the confirmation above
		kopts = append(kopts, keyring.Force())
	}
	info, err := o.Keyring.Destroy(ctx, ref, kopts...)
	if err != nil {
		if checkErr != nil {
			return nil, checkErr
		}
		return nil, err
	}
	res.KEK = info
	return res, nil
}

// ErrAlreadyDestroyed means a destroy named a version destroyed before:
// nothing was done or recorded. Its kind is fielderr.KeyDestroyed (exit 4).
var ErrAlreadyDestroyed = fielderr.New(fielderr.KeyDestroyed, "already destroyed")

// notDestroyed refuses a version that is already destroyed.
func (o *Operator) notDestroyed(ctx context.Context, ref envelope.KEKRef) error {
	infos, err := o.Keyring.List(ctx)
	if err != nil {
		return err
	}
	for _, i := range infos {
		if i.Ref == ref && i.State == keyring.StateDestroyed {
			return fielderr.Errorf(ErrAlreadyDestroyed, "%s is already destroyed (since %s): nothing to do", ref, i.DestroyedAt.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// RewrapOptions tune Rewrap.
type RewrapOptions struct {
	// CreateKey creates the new master key when it is a local:// key file
	// that does not exist.
	CreateKey bool
	// NoWriteConfig leaves the configuration file alone.
	NoWriteConfig bool
	// Note, if set, receives what was done besides the rewrap (a key file
	// created).
	Note func(msg string)
}

// RewrapResult is what Rewrap did.
type RewrapResult struct {
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

// Rewrap rotates the master key of class to `to`: every KEK version of the
// class is moved under it (keyring.RewrapAll, which records
// kek.rewrapped), then the configuration file's classes.<class>.master_key
// is set to `to`, the old key moved to previous_master_keys, unless the
// key came from the environment or a flag or NoWriteConfig is set: then
// Action says what to change.
func (o *Operator) Rewrap(ctx context.Context, class envelope.Class, to string, opts RewrapOptions) (*RewrapResult, error) {
	cfg := o.Config
	if err := keyring.CheckMasterKeyURI(to); err != nil {
		return nil, err
	}
	if path := cfg.LocalKeyPath(to); path != "" && opts.CreateKey {
		if _, err := os.Stat(path); err != nil {
			if _, err := localkms.Create(path); err != nil {
				return nil, err
			}
			if opts.Note != nil {
				opts.Note("created local master key " + path)
			}
		}
	}
	fileURI := cfg.MasterKeyInFile(class.String())
	rep, err := o.Keyring.RewrapAll(ctx, class, cfg.CanonicalURI(to))
	if err != nil {
		return nil, err
	}
	res := &RewrapResult{Class: class.String(), From: rep.From, To: to, Rewrapped: rep.Rewrapped, AlreadyDone: rep.AlreadyDone, Destroyed: rep.Destroyed,
		UnderClassKey: rep.UnderClassKey, MovedToClassKey: rep.MovedToClassKey}
	if res.From == nil {
		res.From = []string{}
	}
	current := cfg.Classes[class.String()].MasterKey
	switch {
	case current == to:
	case opts.NoWriteConfig || cfg.Path == "" || fileURI != current:
		res.Action = fmt.Sprintf("set the master key of class %s to %s in your configuration (it is %s now) and list %s under its previous_master_keys", class, to, current, current)
	default:
		if err := config.UpdateMasterKey(cfg.Path, class.String(), to); err != nil {
			res.Action = fmt.Sprintf("could not update %s (%v): set classes.%s.master_key to %s and add %s to its previous_master_keys yourself", cfg.Path, err, class, to, current)
		} else {
			res.ConfigUpdated = cfg.Path
		}
	}
	return res, nil
}
