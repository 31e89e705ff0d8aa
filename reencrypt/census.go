package reencrypt

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/dbsql"
)

// KeyCount counts the values of one (tenant, class, suite, KEK version).
type KeyCount struct {
	Tenant     string
	Class      envelope.Class
	Suite      envelope.Suite
	KEKVersion uint32
	Count      int64
}

// CensusOptions tune Census. The zero value is usable.
type CensusOptions struct {
	BatchSize   int // rows per read (default 500)
	MaxFailures int // failures listed (default 1000)
}

// CensusResult describes the values of a column by the key they need.
type CensusResult struct {
	Rows      int64
	Nulls     int64
	Plaintext int64 // values that are not ciphertext
	Malformed int64 // values that start like ciphertext but do not parse
	// Keys counts ciphertexts by what their header names, sorted by
	// tenant, class, suite and version.
	Keys []KeyCount
	// Undecryptable counts values that do not open (only when Census got
	// an envelope); Failures lists the first of them (and the malformed
	// ones) by row id.
	Undecryptable int64
	Failures      []RowFailure
	// MissingIndex counts, per blind-index column (Column.BlindIndexes),
	// the encrypted values whose index is NULL: rows that equality search
	// does not find and a unique index does not cover. encrypt-existing
	// (EncryptExisting) writes them, as does gormcrypt.RebuildBlindIndexes.
	MissingIndex map[string]int64
}

// censusJob is the job id of a census's runner (it reads the blind
// indexes to count the missing ones).
const censusJob = "census"

// Census reads every value of col and counts them by key version, so an
// operator can see what a rotation still has to move and whether an old KEK
// version can be retired. With env nil only headers are read (no key is
// needed); with env, every value is also opened, which finds values that no
// longer decrypt. Census writes nothing and needs no job tables.
func Census(ctx context.Context, db *gorm.DB, env *envelope.Envelope, col Column, co CensusOptions) (CensusResult, error) {
	var res CensusResult
	if err := col.validate(); err != nil {
		return res, err
	}
	opts := Options{BatchSize: co.BatchSize, MaxFailures: co.MaxFailures, JobID: censusJob, Owner: censusJob}
	if err := opts.defaults(col); err != nil {
		return res, err
	}
	r, err := newRunner(ctx, db, env, col, opts)
	if err != nil {
		return res, err
	}
	counts := map[KeyCount]int64{}
	res.MissingIndex = map[string]int64{}
	for _, bi := range col.BlindIndexes {
		res.MissingIndex[bi.Column] = 0
	}
	fail := func(rw row, err error) {
		if len(res.Failures) < opts.MaxFailures {
			res.Failures = append(res.Failures, RowFailure{Row: rw.key, Err: err})
		}
	}
	err = r.t.Walk(ctx, r.db, r.cols(), opts.BatchSize, func(batch []dbsql.Row) error {
		for _, rw := range r.rows(batch) {
			res.Rows++
			switch {
			case rw.val == nil:
				res.Nulls++
				continue
			case !envelope.IsCiphertext(rw.val):
				res.Plaintext++
				continue
			}
			h, err := envelope.Inspect(rw.val)
			if err != nil {
				res.Malformed++
				fail(rw, fmt.Errorf("%w: %w", ErrMalformedValue, err))
				continue
			}
			counts[KeyCount{Tenant: rw.tenant, Class: h.Class, Suite: h.Suite, KEKVersion: h.KEKVersion}]++
			for i, missing := range rw.idxNull {
				if missing {
					res.MissingIndex[col.BlindIndexes[i].Column]++
				}
			}
			if env == nil {
				continue
			}
			b := envelope.Binding{Class: col.Class, Tenant: rw.tenant, Table: col.Table, Column: col.Column}
			if h.RowBound {
				b.Row = rw.key
			}
			pt, err := env.Open(ctx, b, rw.val)
			clear(pt)
			if err != nil {
				if errors.Is(err, envelope.ErrKeyUnavailable) {
					return err
				}
				res.Undecryptable++
				fail(rw, err)
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("reencrypt: census of %s.%s: %w", col.Table, col.Column, err)
	}
	for k, n := range counts {
		k.Count = n
		res.Keys = append(res.Keys, k)
	}
	slices.SortFunc(res.Keys, func(a, b KeyCount) int {
		switch {
		case a.Tenant != b.Tenant:
			if a.Tenant < b.Tenant {
				return -1
			}
			return 1
		case a.Class != b.Class:
			return int(a.Class) - int(b.Class)
		case a.Suite != b.Suite:
			return int(a.Suite) - int(b.Suite)
		}
		return int(a.KEKVersion) - int(b.KEKVersion)
	})
	return res, nil
}
