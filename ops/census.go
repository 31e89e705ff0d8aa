package ops

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// VersionCount is the number of values under one KEK version and suite.
type VersionCount struct {
	Class   string `json:"class"`
	Tenant  string `json:"tenant,omitempty"`
	Version uint32 `json:"version"`
	Suite   string `json:"suite"` // randomized or deterministic
	Count   int64  `json:"count"`
}

// Name is "class[/tenant=T]/vN".
func (v VersionCount) Name() string {
	return envelope.KEKRef{Class: mustClass(v.Class), Tenant: v.Tenant, Version: v.Version}.String()
}

func mustClass(s string) envelope.Class {
	c, _ := envelope.ParseClass(s)
	return c
}

// ColumnCensus is the census of one configured column.
type ColumnCensus struct {
	Table     string         `json:"table"`
	Column    string         `json:"column"`
	Class     string         `json:"class"`
	Rows      int64          `json:"rows"`
	Null      int64          `json:"null"`
	Plaintext int64          `json:"plaintext"`
	Encrypted int64          `json:"encrypted"`
	Versions  []VersionCount `json:"versions"`
	// MissingIndex counts, per blind-index column (blind_index), the
	// encrypted values whose index is NULL: equality search does not find
	// them and a unique index does not cover them. encrypt-existing
	// writes them.
	MissingIndex map[string]int64 `json:"missing_index,omitempty"`
	// UnconfiguredIndex names gormcrypt's blind-index column of this
	// column (COLUMN_bidx) when the table has it but the configuration
	// names no blind_index: census cannot check it, encrypt-existing
	// refuses to run until it is configured.
	UnconfiguredIndex string           `json:"unconfigured_blind_index,omitempty"`
	Failed            map[string]int64 `json:"failed"`                // by reason: the fielderr kind's name
	FailedRows        []string         `json:"failed_rows,omitempty"` // first row ids that failed (ids, never values)
}

// CensusResult is a census of the configured columns.
type CensusResult struct {
	Verified  bool           `json:"verified"` // values were opened, not just their headers read
	Columns   []ColumnCensus `json:"columns"`
	Versions  []VersionCount `json:"versions"` // all columns together
	Plaintext int64          `json:"plaintext"`
	Encrypted int64          `json:"encrypted"`
	// MissingIndex counts encrypted values without their blind index, all
	// columns together.
	MissingIndex int64            `json:"missing_index"`
	Failed       map[string]int64 `json:"failed"`
}

// Failure reasons a census counts: the names of the fielderr kinds, and
// "other" for the rest.
var FailureReasons = []string{
	fielderr.Authentication.String(), fielderr.Malformed.String(), fielderr.KeyDestroyed.String(),
	fielderr.KeyRetired.String(), reasonKeyUnknown, reasonOther,
}

const (
	reasonKeyUnknown = "key_unknown"
	reasonOther      = "other"
)

// IntegrityFailures counts values that failed authentication or are
// malformed: tampering or corruption.
func (r *CensusResult) IntegrityFailures() int64 {
	return r.Failed[fielderr.Authentication.String()] + r.Failed[fielderr.Malformed.String()]
}

// TotalFailed counts values that failed to open, for any reason.
func (r *CensusResult) TotalFailed() int64 {
	var n int64
	for _, v := range r.Failed {
		n += v
	}
	return n
}

// CensusOptions choose what a census reads.
type CensusOptions struct {
	Verify    bool           // open every value; else read headers only (no KMS)
	BatchSize int            // rows per query (default 1000)
	Class     envelope.Class // only columns of this class (0: all)
	Columns   []string       // only these "table.column" (empty: all)
}

const (
	maxFailedRows  = 20
	maxFailEvents  = 100
	maxFailuresRun = 100000 // failures the engine lists per column (for classification)
)

// FailureReason names why a value failed to open, for a census: the kind
// of err (authentication, malformed, key_destroyed, key_retired), or
// key_unknown, or other.
func FailureReason(err error) string {
	switch k := fielderr.KindOf(err); k {
	case fielderr.Authentication, fielderr.Malformed, fielderr.KeyDestroyed, fielderr.KeyRetired:
		return k.String()
	case fielderr.Unsupported:
		return fielderr.Malformed.String()
	case fielderr.NotFound:
		return reasonKeyUnknown
	}
	return reasonOther
}

// censusKeys lets a census count values under retired versions as
// failures instead of stopping: a retired version answers "unavailable",
// which the engine treats as a KMS outage.
type censusKeys struct{ envelope.KeySource }

var errRetired = fielderr.New(fielderr.KeyRetired, "key retired")

func (c censusKeys) KEK(ctx context.Context, ref envelope.KEKRef) (*envelope.KEK, error) {
	k, err := c.KeySource.KEK(ctx, ref)
	if err != nil && errors.Is(err, keyring.ErrKeyRetired) {
		return nil, fmt.Errorf("%w: %s", errRetired, err.Error())
	}
	return k, err
}

// Census scans the configured columns (read-only, in batches by primary
// key) and counts values by KEK version, plaintext values and values that
// fail to open, by reason. Values failing authentication or malformed are
// recorded as decrypt.failed events (up to 100 a run).
func (o *Operator) Census(ctx context.Context, opt CensusOptions) (*CensusResult, error) {
	cfg := o.Config
	res := &CensusResult{Verified: opt.Verify, Columns: []ColumnCensus{}, Versions: []VersionCount{}, Failed: map[string]int64{}}
	want := map[string]bool{}
	for _, c := range opt.Columns {
		if _, err := cfg.Column(c); err != nil {
			return nil, err
		}
		want[c] = true
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 1000
	}
	var env *envelope.Envelope
	if opt.Verify {
		env = envelope.New(censusKeys{o.Keyring})
	}
	total := map[VersionCount]int64{}
	events := 0
	for _, col := range cfg.Columns {
		if (opt.Class != 0 && col.ClassValue() != opt.Class) || (len(want) > 0 && !want[col.Name()]) {
			continue
		}
		cr, err := reencrypt.Census(ctx, o.DB, env, col.Reencrypt(cfg.Tenant), reencrypt.CensusOptions{BatchSize: opt.BatchSize, MaxFailures: maxFailuresRun})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("census %s: %w", col.Name(), err)
		}
		tenantScoped := cfg.Classes[col.Class].TenantScoped
		cc := ColumnCensus{Table: col.Table, Column: col.Column, Class: col.Class, Rows: cr.Rows, Null: cr.Nulls,
			Plaintext: cr.Plaintext, Versions: []VersionCount{}, Failed: map[string]int64{}}
		cc.UnconfiguredIndex = o.unconfiguredIndex(ctx, col)
		if len(cr.MissingIndex) > 0 {
			cc.MissingIndex = cr.MissingIndex
			for _, n := range cr.MissingIndex {
				res.MissingIndex += n
			}
		}
		for _, k := range cr.Keys {
			v := VersionCount{Class: k.Class.String(), Version: k.KEKVersion, Suite: suiteName(k.Suite), Count: k.Count}
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
			reason := FailureReason(f.Err)
			cc.Failed[reason]++
			classified++
			if len(cc.FailedRows) < maxFailedRows {
				cc.FailedRows = append(cc.FailedRows, f.Row)
			}
			if (reason == fielderr.Authentication.String() || reason == fielderr.Malformed.String()) && events < maxFailEvents {
				events++
				o.record(ctx, audit.Event{Type: audit.DecryptFailed, Class: col.Class, Table: col.Table, Column: col.Column, Row: f.Row, Error: reason}, nil)
			}
		}
		if rest := cr.Undecryptable + cr.Malformed - classified; rest > 0 {
			cc.Failed[reasonOther] += rest
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
func addVersionCount(vs []VersionCount, v VersionCount) []VersionCount {
	for i := range vs {
		if w := vs[i]; w.Class == v.Class && w.Tenant == v.Tenant && w.Version == v.Version && w.Suite == v.Suite {
			vs[i].Count += v.Count
			return vs
		}
	}
	return append(vs, v)
}

func sortVersions(v []VersionCount) {
	sort.Slice(v, func(i, j int) bool {
		a, b := v[i], v[j]
		if a.Class != b.Class {
			return mustClass(a.Class) < mustClass(b.Class)
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
