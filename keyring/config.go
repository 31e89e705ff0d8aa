package keyring

import (
	"errors"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// Defaults for Config.
const (
	DefaultCacheTTL = 15 * time.Minute
	DefaultMaxAge   = 24 * time.Hour
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
	// CacheTTL is how long an unwrapped KEK (and a scope's primary and
	// search versions) is served without revalidation. 0 means
	// DefaultCacheTTL.
	CacheTTL time.Duration `json:"cache_ttl,omitempty"`
	// MaxAge is how long a cached KEK may be served after its last
	// successful unwrap while refreshes fail (KMS or store unreachable).
	// 0 means DefaultMaxAge. Must be >= CacheTTL.
	MaxAge time.Duration `json:"max_age,omitempty"`
}

// ClassConfig is the configuration of one classification.
type ClassConfig struct {
	// MasterKey is the URI of the class's master key: aws-kms://arn:...,
	// gcp-kms://projects/.../cryptoKeys/..., local:///path. Empty only for
	// the public class.
	MasterKey string `json:"master_key,omitempty"`
	// TenantScoped gives every tenant its own line of KEKs in this class
	// (created on first use), so one tenant can be crypto-shredded alone;
	// tenant "" remains available for data of no tenant. When false, only
	// tenant "" is allowed: lookups with a tenant fail with
	// envelope.ErrInvalidInput (bind such values with Tenant "").
	TenantScoped bool `json:"tenant_scoped,omitempty"`
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	// arn:PARTITION:kms:REGION:ACCOUNT:key/ID or alias/NAME
	awsARN = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+)$`)
	gcpKey = regexp.MustCompile(`^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$`)
)

// CheckMasterKeyURI checks the shape of a master key URI: the scheme must be
// aws-kms (followed by a KMS key or alias ARN), gcp-kms (followed by
// projects/P/locations/L/keyRings/R/cryptoKeys/K) or local (followed by a
// non-empty path). It does not contact the KMS.
func CheckMasterKeyURI(uri string) error {
	if p := uriProblem(uri); p != "" {
		return configErr("master key URI %q: %s", uri, p)
	}
	return nil
}

func uriProblem(uri string) string {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok || scheme == "" {
		return "no scheme (want aws-kms://, gcp-kms:// or local://)"
	}
	switch scheme {
	case "aws-kms":
		if !awsARN.MatchString(rest) {
			return "want aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID (or alias/NAME)"
		}
	case "gcp-kms":
		if !gcpKey.MatchString(rest) {
			return "want gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K"
		}
	case "local":
		if strings.TrimSpace(rest) == "" || strings.ContainsRune(rest, 0) {
			return "want local://PATH with a non-empty path"
		}
	default:
		return "unknown scheme " + strconv.Quote(scheme) + " (want aws-kms, gcp-kms or local)"
	}
	return ""
}

// Validate checks the whole configuration and returns every problem found
// (joined), each wrapping ErrInvalidConfig and naming the entry.
func (c Config) Validate() error {
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
		if p := uriProblem(cc.MasterKey); p != "" {
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
	if encrypted == 0 && len(errs) == 0 {
		errs = append(errs, configErr("no encrypted class configured (want at least one of critical, high, moderate, low with a master_key)"))
	}
	return errors.Join(errs...)
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

// clone returns a deep copy.
func (c Config) clone() Config {
	out := c
	out.Classes = make(map[string]ClassConfig, len(c.Classes))
	for k, v := range c.Classes {
		out.Classes[k] = v
	}
	return out
}
