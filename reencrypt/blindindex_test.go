package reencrypt

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// indexes reads id -> blind index (nil for NULL).
func indexes(t *testing.T, db *gorm.DB, table string) map[int64]*string {
	t.Helper()
	rows, err := db.Raw("SELECT id, val_bidx FROM " + table + " ORDER BY id").Rows()
	require.NoError(t, err)
	defer rows.Close()
	out := map[int64]*string{}
	for rows.Next() {
		var id int64
		var v *string
		require.NoError(t, rows.Scan(&id, &v))
		out[id] = v
	}
	require.NoError(t, rows.Err())
	return out
}

// TestBlindIndexes: EncryptExisting writes the blind index with the value,
// fills the indexes an earlier migration left NULL, Full moves them to the
// newest search key, census counts the missing ones.
func TestBlindIndexes(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys, env := newKeys()
		col := testColumn("items", true)
		col.RowBound = true
		createTable(t, db, col.Table, true)
		require.NoError(t, db.Exec("ALTER TABLE items ADD val_bidx VARCHAR(64) NULL").Error)
		const n = 250
		seed(t, db, env, col, n, func(id int64) string {
			switch id % 10 {
			case 0:
				return "null"
			case 1, 2, 3:
				return "ct" // encrypted without an index: an earlier migration
			}
			return "pt"
		})
		spec := envelope.BlindIndex{Size: 16}
		want := func(id int64) string {
			h, err := env.ComputeBlindIndexText(ctx, envelope.Binding{Class: col.Class, Table: col.Table, Column: col.Column}, spec, []byte(plain(id)))
			require.NoError(t, err)
			return h
		}
		indexed := col
		indexed.BlindIndexes = []BlindIndex{{Column: "val_bidx", Spec: spec}}

		res, err := Census(ctx, db, nil, indexed, CensusOptions{})
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"val_bidx": 75}, res.MissingIndex)
		noIdx, err := Census(ctx, db, nil, col, CensusOptions{})
		require.NoError(t, err)
		assert.Empty(t, noIdx.MissingIndex)

		dry, err := Run(ctx, db, env, indexed, Options{Mode: EncryptExisting, DryRun: true})
		require.NoError(t, err)
		assert.Equal(t, int64(150), dry.Changed)
		assert.Equal(t, int64(75), dry.Indexed)
		for _, v := range indexes(t, db, col.Table) {
			assert.Nil(t, v, "dry run writes nothing")
		}

		sum, err := Run(ctx, db, env, indexed, Options{Mode: EncryptExisting, BatchSize: 40, ChunkSize: 100, Workers: 2})
		require.NoError(t, err)
		assert.Equal(t, int64(150), sum.Changed)
		assert.Equal(t, int64(75), sum.Indexed)
		assert.Equal(t, int64(25), sum.Nulls)
		vals, idx := values(t, db, col), indexes(t, db, col.Table)
		for id := int64(1); id <= n; id++ {
			if id%10 == 0 {
				assert.Nil(t, vals[id])
				assert.Nil(t, idx[id], "row %d: a NULL value has no index", id)
				continue
			}
			pt, _ := openValue(t, env, col, id, vals[id])
			assert.Equal(t, plain(id), pt)
			require.NotNil(t, idx[id], "row %d", id)
			assert.Equal(t, want(id), *idx[id], "row %d", id)
		}
		res, err = Census(ctx, db, nil, indexed, CensusOptions{})
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"val_bidx": 0}, res.MissingIndex)

		// A rerun changes nothing.
		sum, err = Run(ctx, db, env, indexed, Options{Mode: EncryptExisting})
		require.NoError(t, err)
		assert.Zero(t, sum.Changed)
		assert.Zero(t, sum.Indexed)
		assert.Equal(t, int64(225), sum.Current)

		// Full after a search-key rotation: values re-sealed, indexes
		// under the new search key, in the same statement.
		keys.Rotate(scope)
		keys.RotateSearch(scope)
		sum, err = Run(ctx, db, env, indexed, Options{Mode: Full, BatchSize: 64})
		require.NoError(t, err)
		assert.Equal(t, int64(225), sum.Changed)
		vals, after := values(t, db, col), indexes(t, db, col.Table)
		for id := int64(1); id <= n; id++ {
			if id%10 == 0 {
				continue
			}
			pt, _ := openValue(t, env, col, id, vals[id])
			assert.Equal(t, plain(id), pt)
			assert.Equal(t, want(id), *after[id], "row %d: index under the newest search key", id)
			assert.NotEqual(t, *idx[id], *after[id], "row %d", id)
		}
	})
}

func TestBlindIndexValidation(t *testing.T) {
	base := testColumn("items", true)
	for _, tc := range []struct {
		name string
		mod  func(*Column)
	}{
		{"not an identifier", func(c *Column) { c.BlindIndexes = []BlindIndex{{Column: "x; drop"}} }},
		{"the value's column", func(c *Column) { c.BlindIndexes = []BlindIndex{{Column: "VAL"}} }},
		{"twice", func(c *Column) { c.BlindIndexes = []BlindIndex{{Column: "a"}, {Column: "a"}} }},
		{"size", func(c *Column) { c.BlindIndexes = []BlindIndex{{Column: "a", Spec: envelope.BlindIndex{Size: 3}}} }},
		{"deterministic", func(c *Column) { c.Deterministic = true; c.BlindIndexes = []BlindIndex{{Column: "a"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			assert.ErrorIs(t, c.validate(), ErrInvalidOptions)
		})
	}
}

// TestBlindIndexUniqueCollision: two legacy rows with the same value under
// a unique blind index: the second fails, named by its key (never the
// value or the index), and every other row is migrated.
func TestBlindIndexUniqueCollision(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		_, env := newKeys()
		col := testColumn("items", true)
		createTable(t, db, col.Table, true)
		require.NoError(t, db.Exec("ALTER TABLE items ADD val_bidx VARCHAR(64) NULL").Error)
		require.NoError(t, db.Exec("CREATE UNIQUE INDEX items_val_bidx ON items (val_bidx)").Error)
		seed(t, db, env, col, 60, func(int64) string { return "pt" })
		dup := plain(10)
		require.NoError(t, db.Exec("UPDATE items SET val = ? WHERE id IN (25, 50)", dup).Error)
		col.BlindIndexes = []BlindIndex{{Column: "val_bidx"}}

		sum, err := Run(ctx, db, env, col, Options{Mode: EncryptExisting, BatchSize: 20})
		require.ErrorIs(t, err, ErrRowsFailed)
		assert.NotContains(t, err.Error(), dup)
		assert.Equal(t, int64(58), sum.Changed)
		assert.Equal(t, int64(2), sum.Failed)
		require.Len(t, sum.Failures, 2)
		assert.Equal(t, []string{"25", "50"}, []string{sum.Failures[0].Row, sum.Failures[1].Row})
		for _, f := range sum.Failures {
			assert.ErrorIs(t, f.Err, ErrDuplicateIndex)
		}
		vals := values(t, db, col)
		assert.Equal(t, dup, string(vals[25]), "the colliding row is left as it was")
		assert.True(t, envelope.IsCiphertext(vals[10]))
		assert.True(t, envelope.IsCiphertext(vals[26]))

		// Remove the duplicates, run again: done.
		require.NoError(t, db.Exec("DELETE FROM items WHERE id IN (25, 50)").Error)
		sum, err = Run(ctx, db, env, col, Options{Mode: EncryptExisting})
		require.NoError(t, err)
		assert.Zero(t, sum.Changed)
		assert.Equal(t, int64(58), sum.Current)
	})
}
