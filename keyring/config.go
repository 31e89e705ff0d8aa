package keyring

import (
	"errors"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// Defaults for Config.
const (
	DefaultCacheTTL     = 15 * time.Minute
	DefaultMaxAge       = 24 * time.Hour
	DefaultStateRefresh = 30 * time.Second
)

// MaxStateAge is the hard bound on the age of the scope state (which
// version is primary, which are retired or destroyed, the search keys) that
// any keyring seals or opens with. A state is re-read every
// Config.StateRefresh; if the store cannot be read, lookups of the scope
// fail with envelope.ErrKeyUnavailable once the state is MaxStateAge old,
// whatever CacheTTL and MaxAge say (those bound KEK material, a KMS
// matter). It is a constant of the library, not a setting, so that a
// process deciding whether a demoted version may be destroyed (Destroy,
// Retire) knows the bound every other process obeys without being told.
const MaxStateAge = 2 * time.Minute

// DemotionSlack is added to MaxStateAge before a demoted version may be
// retired or destroyed (see Destroy). It covers what MaxStateAge does not:
// the time between the Rotate that demoted the version stamping its
// DemotedAt and the commit that made it visible, the time between a
// process sealing a value and its own transaction committing it, and
// clock skew between the hosts that rotate and destroy.
const DemotionSlack = time.Minute

// maxStateAge and demotionSlack are MaxStateAge and DemotionSlack; tests
// shorten them.
var (
	maxStateAge   = MaxStateAge
	demotionSlack = DemotionSlack
)

// Config says which master key protects each classification. It is plain
// data: the CLI loads it from a file, applications may build it in code.
// Validate checks it; New calls Validate.
type Config struct {
	// Name identifies the keyring. It is bound into every wrapped KEK's
	// encryption context ("fieldcrypt:keyring"), so a KEK wrapped for one
	// keyring never unwraps in another. Changing it makes every stored KEK
	// unreadable. Required: letters, digits, '.', '_', '-', at most 64.
	Name string `json:"name"`
	// Classes maps a class name ("critical", "high", "moderate", "low",
	// "public") to its settings. Classes not listed have no keys: lookups
	// for them fail. "public" may be listed only without a master key.
	Classes map[string]ClassConfig `json:"classes"`
	// CacheTTL is how long an unwrapped KEK (or class key) is served
	// without asking the KMS again. It does not delay rotations,
	// retirements or destructions: those are scope state, refreshed every
	// StateRefresh. 0 means DefaultCacheTTL.
	CacheTTL time.Duration `json:"cache_ttl,omitempty"`
	// MaxAge is how long a cached KEK may be served after its last
	// successful unwrap while refreshes fail (KMS unreachable). 0 means
	// DefaultMaxAge. Must be >= CacheTTL.
	MaxAge time.Duration `json:"max_age,omitempty"`
	// StateRefresh is how often a process re-reads a scope's state from
	// the store (a database read, no KMS call): a rotation, retirement or
	// destruction by another process reaches this one within StateRefresh
	// plus one store read. 0 means DefaultStateRefresh; at most
	// MaxStateAge/2, so that one failed read does not stop lookups.
	StateRefresh time.Duration `json:"state_refresh,omitempty"`
	// AllowUnsealedStore lets the keyring use a store written before
	// keyrings were sealed (no class keys, no MACs: see Upgrade) instead of
	// refusing it. It is a migration window, not a mode: while it is set, a
	// store writer can substitute keys in classes that are not sealed yet.
	// Each unsealed scope used is audited (keyring.unsealed). Run Upgrade
	// (fieldcrypt keys upgrade), then turn it off. Sealed classes are
	// verified whatever it says.
	AllowUnsealedStore bool `json:"allow_unsealed_store,omitempty"`
	// Decrypt and EncryptOnly limit what this process may do with each
	// class: least privilege inside the process, on top of the KMS key
	// policies (docs/operations.md shows matching ones). Both empty (the
	// default): no limit. Otherwise a class in Decrypt may be sealed and
	// opened; a class in EncryptOnly may only be sealed (PrimaryKEK,
	// SearchKEKs: randomized and deterministic values, blind indexes) and
	// never opened (KEK: Open, Rewrap); a class in neither may not be
	// used at all. Lifecycle operations (Rotate, Retire, Destroy,
	// ShredTenant, RewrapAll, Upgrade, ...) need the class in Decrypt;
	// creating a scope's first KEK (EnsureScope, EnsureTenants, Init,
	// first use) needs either. A refusal fails with ErrAccessDenied (and
	// envelope.ErrKeyUnavailable) before any key is read or unwrapped, and
	// is audited (keyring.access_denied). Entries are configured encrypted
	// classes, each in one list at most.
	Decrypt     []string `json:"decrypt,omitempty"`
	EncryptOnly []string `json:"encrypt_only,omitempty"`
}

// ClassConfig is the configuration of one classification.
type ClassConfig struct {
	// MasterKey is the URI of the class's master key: aws-kms://arn:...,
	// gcp-kms://projects/.../cryptoKeys/..., local:///path. Empty only for
	// the public class. New KEKs are wrapped under it.
	MasterKey string `json:"master_key,omitempty" yaml:"master_key"`
	// PreviousMasterKeys lists the other master keys this class's KEKs may
	// be stored under: the previous ones after a master-key rotation
	// (RewrapAll moves the old MasterKey here), and the next one while a
	// rotation is rolled out. The keyring unwraps a KEK only under
	// MasterKey or one of these: the master key URI a stored record names
	// only selects among them, it is never authority. Validated like
	// MasterKey; never another class's key.
	PreviousMasterKeys []string `json:"previous_master_keys,omitempty" yaml:"previous_master_keys,omitempty"`
	// TenantScoped gives every tenant its own line of KEKs in this class
	// (created on first use), so one tenant can be crypto-shredded alone;
	// tenant "" remains available for data of no tenant. When false, only
	// tenant "" is allowed: lookups with a tenant fail with
	// envelope.ErrInvalidInput (bind such values with Tenant "").
	TenantScoped bool `json:"tenant_scoped,omitempty" yaml:"tenant_scoped,omitempty"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// CheckMasterKeyURI checks a master key URI without contacting the KMS: its
// scheme must be registered in kms.DefaultRegistry (aws-kms, gcp-kms, local
// once their packages are imported, or a scheme of your own), and that
// backend must accept it. Errors wrap ErrInvalidConfig.
func CheckMasterKeyURI(uri string) error {
	if p := uriProblem(kms.DefaultRegistry, uri); p != "" {
		return configErr("master key URI %q: %s", uri, p)
	}
	return nil
}

// uriProblem asks the backend of uri's scheme whether it is valid; it
// returns why not, or "".
func uriProblem(v kms.URIValidator, uri string) string {
	if err := v.ValidateURI(uri); err != nil {
		return strings.TrimPrefix(err.Error(), kms.ErrInvalidURI.Error()+": ")
	}
	return ""
}

// Validate checks the whole configuration and returns every problem found
// (joined), each wrapping ErrInvalidConfig and naming the entry. Master key
// URIs are checked by their backends in kms.DefaultRegistry (New checks
// them with the keyring's opener when it is a kms.URIValidator, such as a
// kms.Registry).
func (c Config) Validate() error { return c.validate(kms.DefaultRegistry) }

func (c Config) validate(uris kms.URIValidator) error {
	var errs []error
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, configErr("name %q: want 1-64 letters, digits, '.', '_' or '-'", c.Name))
	}
	if c.CacheTTL < 0 {
		errs = append(errs, configErr("cache_ttl %v is negative", c.CacheTTL))
	}
	if c.MaxAge < 0 {
		errs = append(errs, configErr("max_age %v is negative", c.MaxAge))
	}
	if c.ttl() > c.maxAge() {
		errs = append(errs, configErr("cache_ttl %v exceeds max_age %v", c.ttl(), c.maxAge()))
	}
	if c.StateRefresh < 0 {
		errs = append(errs, configErr("state_refresh %v is negative", c.StateRefresh))
	}
	if c.StateRefresh > MaxStateAge/2 {
		errs = append(errs, configErr("state_refresh %v exceeds %v (half of keyring.MaxStateAge %v)", c.StateRefresh, MaxStateAge/2, MaxStateAge))
	}
	names := make([]string, 0, len(c.Classes))
	for n := range c.Classes {
		names = append(names, n)
	}
	sort.Strings(names)
	seenClass := map[envelope.Class]string{}
	seenURI := map[string]string{}
	encrypted := 0
	for _, n := range names {
		cc := c.Classes[n]
		cl, err := envelope.ParseClass(n)
		if err != nil || n != cl.String() {
			errs = append(errs, configErr("class %q: unknown class name (want critical, high, moderate, low or public, lower case)", n))
			continue
		}
		if prev, dup := seenClass[cl]; dup {
			errs = append(errs, configErr("class %q: listed twice (also as %q)", n, prev))
			continue
		}
		seenClass[cl] = n
		if !cl.Encrypted() {
			if cc.MasterKey != "" {
				errs = append(errs, configErr("class %q: public data is stored in clear and takes no master key (got %q)", n, cc.MasterKey))
			}
			if cc.TenantScoped {
				errs = append(errs, configErr("class %q: public data has no keys to scope by tenant", n))
			}
			continue
		}
		if cc.MasterKey == "" {
			errs = append(errs, configErr("class %q: master_key is required", n))
			continue
		}
		if p := uriProblem(uris, cc.MasterKey); p != "" {
			errs = append(errs, configErr("class %q: master key URI %q: %s", n, cc.MasterKey, p))
			continue
		}
		if other, dup := seenURI[cc.MasterKey]; dup {
			errs = append(errs, configErr("class %q: master key %q is also the master key of class %q (keys never cross classification levels)", n, cc.MasterKey, other))
			continue
		}
		seenURI[cc.MasterKey] = n
		encrypted++
	}
	// Previous master keys, once every current one is known.
	for _, n := range names {
		cc := c.Classes[n]
		cl, err := envelope.ParseClass(n)
		if len(cc.PreviousMasterKeys) == 0 || err != nil || n != cl.String() {
			continue // unknown classes are reported above
		}
		if !cl.Encrypted() {
			errs = append(errs, configErr("class %q: public data takes no previous_master_keys", n))
			continue
		}
		for _, uri := range cc.PreviousMasterKeys {
			if p := uriProblem(uris, uri); p != "" {
				errs = append(errs, configErr("class %q: previous master key URI %q: %s", n, uri, p))
				continue
			}
			if other, dup := seenURI[uri]; dup {
				if other == n {
					errs = append(errs, configErr("class %q: previous master key %q is listed twice (or is the current master key)", n, uri))
				} else {
					errs = append(errs, configErr("class %q: previous master key %q is also a master key of class %q (keys never cross classification levels)", n, uri, other))
				}
				continue
			}
			seenURI[uri] = n
		}
	}
	errs = append(errs, c.validateAccess()...)
	if encrypted == 0 && len(errs) == 0 {
		errs = append(errs, configErr("no encrypted class configured (want at least one of critical, high, moderate, low with a master_key)"))
	}
	return errors.Join(errs...)
}

// validateAccess checks Decrypt and EncryptOnly: configured encrypted
// classes, each listed once.
func (c Config) validateAccess() []error {
	var errs []error
	listed := map[string]string{}
	for _, l := range []struct {
		field   string
		classes []string
	}{{"decrypt", c.Decrypt}, {"encrypt_only", c.EncryptOnly}} {
		for _, n := range l.classes {
			cl, err := envelope.ParseClass(n)
			cc, configured := c.Classes[n]
			switch {
			case err != nil || n != cl.String():
				errs = append(errs, configErr("%s: unknown class %q", l.field, n))
			case !cl.Encrypted() || !configured || cc.MasterKey == "":
				errs = append(errs, configErr("%s: class %q is not a configured encrypted class", l.field, n))
			case listed[n] != "":
				errs = append(errs, configErr("%s: class %q is listed twice (also in %s)", l.field, n, listed[n]))
			default:
				listed[n] = l.field
			}
		}
	}
	return errs
}

// access returns what the configuration lets a process do per class, or
// nil for no limit.
func (c Config) access() map[envelope.Class]access {
	if len(c.Decrypt) == 0 && len(c.EncryptOnly) == 0 {
		return nil
	}
	out := map[envelope.Class]access{}
	for _, n := range c.Decrypt {
		cl, _ := envelope.ParseClass(n)
		out[cl] = accessDecrypt
	}
	for _, n := range c.EncryptOnly {
		cl, _ := envelope.ParseClass(n)
		out[cl] = accessEncrypt
	}
	return out
}

func (c Config) ttl() time.Duration {
	if c.CacheTTL == 0 {
		return DefaultCacheTTL
	}
	return c.CacheTTL
}

func (c Config) maxAge() time.Duration {
	if c.MaxAge == 0 {
		return DefaultMaxAge
	}
	return c.MaxAge
}

// stateRefresh is the effective refresh interval: StateRefresh or its
// default, never more than half of maxStateAge (which tests shorten).
func (c Config) stateRefresh() time.Duration {
	d := c.StateRefresh
	if d == 0 {
		d = DefaultStateRefresh
	}
	return min(d, maxStateAge/2)
}

// trusts reports whether uri is a master key of class n: its MasterKey or
// one of its PreviousMasterKeys.
func (cc ClassConfig) trusts(uri string) bool {
	return uri != "" && (uri == cc.MasterKey || slices.Contains(cc.PreviousMasterKeys, uri))
}

// clone returns a deep copy.
func (c Config) clone() Config {
	out := c
	out.Classes = make(map[string]ClassConfig, len(c.Classes))
	for k, v := range c.Classes {
		v.PreviousMasterKeys = slices.Clone(v.PreviousMasterKeys)
		out.Classes[k] = v
	}
	out.Decrypt, out.EncryptOnly = slices.Clone(c.Decrypt), slices.Clone(c.EncryptOnly)
	return out
}
