package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// Failure reasons counted by census.
const (
	failAuthentication = "authentication" // tampered, moved, wrong binding: integrity
	failMalformed      = "malformed"      // not a well-formed ciphertext: integrity
	failKeyDestroyed   = "key_destroyed"  // its KEK version was crypto-shredded
	failKeyRetired     = "key_retired"    // its KEK version is retired
	failKeyUnknown     = "key_unknown"    // its KEK version is not in the keyring
	failOther          = "other"
)

// versionCount is the number of values under one KEK version.
type versionCount struct {
	Class   string `json:"class"`
	Tenant  string `json:"tenant,omitempty"`
	Version uint32 `json:"version"`
	Suite   string `json:"suite"` // randomized or deterministic
	Count   int64  `json:"count"`
}

// columnCensus is the census of one configured column.
type columnCensus struct {
	Table      string           `json:"table"`
	Column     string           `json:"column"`
	Class      string           `json:"class"`
	Rows       int64            `json:"rows"`
	Null       int64            `json:"null"`
	Plaintext  int64            `json:"plaintext"`
	Encrypted  int64            `json:"encrypted"`
	Versions   []versionCount   `json:"versions"`
	Failed     map[string]int64 `json:"failed"`
	FailedRows []string         `json:"failed_rows,omitempty"` // first row ids that failed (ids, never values)
}

// censusResult is the whole census.
type censusResult struct {
	Verified  bool             `json:"verified"` // values were opened, not just their headers read
	Columns   []columnCensus   `json:"columns"`
	Versions  []versionCount   `json:"versions"` // all columns together
	Plaintext int64            `json:"plaintext"`
	Encrypted int64            `json:"encrypted"`
	Failed    map[string]int64 `json:"failed"`
}

// integrityFailures counts values that failed authentication or parsing.
func (r *censusResult) integrityFailures() int64 {
	return r.Failed[failAuthentication] + r.Failed[failMalformed]
}

type censusOptions struct {
	Verify    bool           // open every value; else read headers only
	BatchSize int            // rows per query
	Class     envelope.Class // only columns of this class (0: all)
	Columns   []string       // only these "table.column" (empty: all)
}

const (
	maxFailedRows  = 20
	maxFailEvents  = 100
	maxFailuresRun = 100000 // failures the engine lists per column (for classification)
)

// engineColumn is the reencrypt engine's description of a column.
func (c ColumnConfig) engineColumn(tenant string) reencrypt.Column {
	return reencrypt.Column{
		Table: c.Table, PK: c.PK, Column: c.Column, Class: c.ClassValue(),
		Tenant: tenant, TenantColumn: c.TenantColumn,
		RowBound: c.RowBound, Deterministic: c.Deterministic(), Text: !c.Binary(),
	}
}

// censusKeys lets a census count values under retired versions as
// failures instead of stopping: a retired version answers "unavailable",
// which the engine treats as a KMS outage.
type censusKeys struct{ envelope.KeySource }

type retiredError struct{ msg string }

func (e *retiredError) Error() string { return e.msg }
func (e *retiredError) Unwrap() error { return keyring.ErrKeyRetired }

func (c censusKeys) KEK(ctx context.Context, ref envelope.KEKRef) (*envelope.KEK, error) {
	k, err := c.KeySource.KEK(ctx, ref)
	if err != nil && errors.Is(err, keyring.ErrKeyRetired) {
		return nil, &retiredError{err.Error()}
	}
	return k, err
}

// census scans the configured columns through the reencrypt engine's
// Census and counts values by KEK version, plaintext values and values that
// fail to open, by reason. It only reads.
func (a *app) census(ctx context.Context, db *gorm.DB, keys envelope.KeySource, cfg *Config, opt censusOptions) (*censusResult, error) {
	res := &censusResult{Verified: opt.Verify, Columns: []columnCensus{}, Versions: []versionCount{}, Failed: map[string]int64{}}
	want := map[string]bool{}
	for _, c := range opt.Columns {
		if _, err := cfg.Column(c); err != nil {
			return nil, err
		}
		want[c] = true
	}
	var env *envelope.Envelope
	if opt.Verify {
		env = envelope.New(censusKeys{keys})
	}
	total := map[versionCount]int64{}
	events := 0
	for _, col := range cfg.Columns {
		if opt.Class != 0 && col.ClassValue() != opt.Class {
			continue
		}
		if len(want) > 0 && !want[col.Name()] {
			continue
		}
		cr, err := reencrypt.Census(ctx, db, env, col.engineColumn(cfg.Tenant), reencrypt.CensusOptions{BatchSize: opt.BatchSize, MaxFailures: maxFailuresRun})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("census %s: %w", col.Name(), err)
		}
		tenantScoped := cfg.Classes[col.Class].TenantScoped
		cc := columnCensus{Table: col.Table, Column: col.Column, Class: col.Class, Rows: cr.Rows, Null: cr.Nulls,
			Plaintext: cr.Plaintext, Versions: []versionCount{}, Failed: map[string]int64{}}
		for _, k := range cr.Keys {
			v := versionCount{Class: k.Class.String(), Version: k.KEKVersion, Suite: suiteName(k.Suite), Count: k.Count}
			if tenantScoped {
				v.Tenant = k.Tenant
			}
			cc.Versions = addVersionCount(cc.Versions, v)
			cc.Encrypted += k.Count
			key := v
			key.Count = 0
			total[key] += k.Count
		}
		classified := int64(0)
		for _, f := range cr.Failures {
			reason := failReason(f.Err)
			cc.Failed[reason]++
			classified++
			if len(cc.FailedRows) < maxFailedRows {
				cc.FailedRows = append(cc.FailedRows, f.Row)
			}
			if (reason == failAuthentication || reason == failMalformed) && events < maxFailEvents {
				events++
				a.record(ctx, audit.Event{Type: audit.DecryptFailed, Class: col.Class, Table: col.Table, Column: col.Column, Row: f.Row, Error: reason}, nil)
			}
		}
		if rest := cr.Undecryptable + cr.Malformed - classified; rest > 0 {
			cc.Failed[failOther] += rest
		}
		for r, n := range cc.Failed {
			res.Failed[r] += n
		}
		res.Plaintext += cc.Plaintext
		res.Encrypted += cc.Encrypted
		res.Columns = append(res.Columns, cc)
	}
	for k, n := range total {
		k.Count = n
		res.Versions = append(res.Versions, k)
	}
	sortVersions(res.Versions)
	return res, nil
}

// suiteName names a suite for the census: both randomized suites (0x01,
// whose data key is wrapped under the KEK itself, and 0x03, under a key
// derived from it) are "randomized", and count together.
func suiteName(s envelope.Suite) string {
	switch {
	case s.Randomized():
		return "randomized"
	case s == envelope.SuiteDeterministic:
		return "deterministic"
	}
	return s.String()
}

// addVersionCount adds v to vs, merging it into an entry of the same class,
// tenant, version and suite name.
func addVersionCount(vs []versionCount, v versionCount) []versionCount {
	for i := range vs {
		if w := vs[i]; w.Class == v.Class && w.Tenant == v.Tenant && w.Version == v.Version && w.Suite == v.Suite {
			vs[i].Count += v.Count
			return vs
		}
	}
	return append(vs, v)
}

func sortVersions(v []versionCount) {
	sort.Slice(v, func(i, j int) bool {
		a, b := v[i], v[j]
		if a.Class != b.Class {
			ca, _ := envelope.ParseClass(a.Class)
			cb, _ := envelope.ParseClass(b.Class)
			return ca < cb
		}
		if a.Tenant != b.Tenant {
			return a.Tenant < b.Tenant
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Suite < b.Suite
	})
}

func failReason(err error) string {
	switch {
	case errors.Is(err, envelope.ErrKeyDestroyed):
		return failKeyDestroyed
	case errors.Is(err, keyring.ErrKeyRetired):
		return failKeyRetired
	case errors.Is(err, envelope.ErrAuthentication):
		return failAuthentication
	case errors.Is(err, reencrypt.ErrMalformedValue), errors.Is(err, envelope.ErrMalformed), errors.Is(err, envelope.ErrUnsupportedVersion):
		return failMalformed
	case errors.Is(err, envelope.ErrUnknownKey):
		return failKeyUnknown
	}
	return failOther
}
