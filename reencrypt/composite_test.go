package reencrypt

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// TestCompositePrimaryKey: a table keyed by (region, id) is re-encrypted
// in chunks and batches like any other, values bound to their row as
// envelope.RowKeys renders the composite key (gormcrypt's rendering).
func TestCompositePrimaryKey(t *testing.T) {
	const n = 157
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := testsvc.Open(t, d)
			keys, env := newKeys()
			require.NoError(t, db.Exec(`CREATE TABLE regional (region VARCHAR(16) NOT NULL, id BIGINT NOT NULL, val TEXT NULL, PRIMARY KEY (region, id))`).Error)
			col := Column{Table: "regional", PK: "region, id", Column: "val", Class: envelope.High, Text: true, RowBound: true}
			bind := func(region string, id int64) envelope.Binding {
				return envelope.Binding{Class: col.Class, Table: col.Table, Column: col.Column, Row: envelope.RowKeys(region, id)}
			}
			for i := int64(1); i <= n; i++ {
				region := []string{"eu", "us", "ap"}[i%3]
				ct, err := env.Seal(ctx, bind(region, i), []byte(plain(i)))
				require.NoError(t, err)
				require.NoError(t, db.Exec(`INSERT INTO regional (region, id, val) VALUES (?, ?, ?)`, region, i, envelope.EncodeText(ct)).Error)
			}
			v2 := keys.Rotate(scope)
			for _, mode := range []Mode{Rewrap, Full} {
				sum, err := Run(ctx, db, env, col, Options{Mode: mode, Workers: 2, BatchSize: 10, ChunkSize: 40})
				require.NoError(t, err, mode)
				assert.Equal(t, int64(n), sum.Scanned)
				assert.True(t, sum.JobFinished)
			}
			rows, err := db.Raw(`SELECT region, id, val FROM regional ORDER BY region, id`).Rows()
			require.NoError(t, err)
			defer rows.Close()
			seen := 0
			for rows.Next() {
				var region, val string
				var id int64
				require.NoError(t, rows.Scan(&region, &id, &val))
				h, err := envelope.Inspect([]byte(val))
				require.NoError(t, err)
				assert.Equal(t, v2, h.KEKVersion)
				pt, err := env.Open(ctx, bind(region, id), []byte(val))
				require.NoError(t, err, "row (%s, %d)", region, id)
				assert.Equal(t, plain(id), string(pt))
				seen++
			}
			assert.Equal(t, n, seen)

			c, err := Census(ctx, db, env, col, CensusOptions{BatchSize: 7})
			require.NoError(t, err)
			assert.Equal(t, int64(n), c.Rows)
			assert.Zero(t, c.Undecryptable)
			assert.Equal(t, `"eu","3"`, envelope.RowKeys("eu", int64(3)), fmt.Sprint("the rendering gormcrypt uses"))
		})
	}
}
