package gormcrypt_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

func TestRebuildBlindIndexes(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		ctx := context.Background()
		db, keys := open(t, raw)
		var ps []Patient
		for i := range 7 {
			p := samplePatient(fmt.Sprintf("%04d", i))
			require.NoError(t, db.Create(&p).Error)
			ps = append(ps, p)
		}
		d := Doctor{Name: "Dr. Who", License: "L-123"}
		require.NoError(t, db.Create(&d).Error) // auto-increment key: not row-bound

		// Search-key rotation: new values index under the new key; old
		// rows are still found (queries cover both live search keys).
		ssnScope := envelope.Scope{Class: envelope.Critical}
		keys.Rotate(ssnScope)
		keys.RotateSearch(ssnScope)
		keys.Rotate(envelope.Scope{Class: envelope.High})
		keys.RotateSearch(envelope.Scope{Class: envelope.High})
		var got Patient
		require.NoError(t, db.Where(&Patient{SSN: ps[3].SSN}).First(&got).Error)

		// A value that no longer opens is reported by row, not fatal.
		rawExec(t, db, "UPDATE patients SET ssn = ? WHERE id = ?", rawColumn(t, db, "patients", "ssn", ps[6].ID).String, ps[5].ID.String())

		res, err := gormcrypt.RebuildBlindIndexes(ctx, db, &Patient{}, 3)
		require.NoError(t, err)
		require.Len(t, res, 1)
		assert.Equal(t, "ssn_bidx", res[0].Column)
		assert.Equal(t, int64(7), res[0].Rows)
		assert.Equal(t, int64(6), res[0].Updated)
		assert.Equal(t, int64(1), res[0].Failed)
		assert.Equal(t, []string{ps[5].ID.String()}, res[0].FailedRows)

		// Every index now matches the newest search key alone.
		e := envelope.New(keys)
		for _, p := range ps {
			if p.ID == ps[5].ID {
				continue
			}
			want, err := e.ComputeBlindIndex(ctx, envelope.Binding{Class: envelope.Critical, Table: "patients", Column: "ssn"}, envelope.BlindIndex{}, []byte(p.SSN))
			require.NoError(t, err)
			assert.Equal(t, hex.EncodeToString(want), rawColumn(t, db, "patients", "ssn_bidx", p.ID).String)
		}

		dres, err := gormcrypt.RebuildBlindIndexes(ctx, db, &Doctor{}, 0)
		require.NoError(t, err)
		require.Len(t, dres, 1)
		assert.Equal(t, int64(1), dres[0].Updated)

		// A rerun only reads.
		res, err = gormcrypt.RebuildBlindIndexes(ctx, db, &Patient{}, 0)
		require.NoError(t, err)
		assert.Equal(t, int64(6), res[0].Current)
		assert.Zero(t, res[0].Updated)
		require.NoError(t, db.Where(&Patient{SSN: ps[3].SSN}).First(&got).Error)
		assert.Equal(t, ps[3].Name, got.Name)
	})
}

// Badge has a composite primary key and a row-bound, indexed field.
type Badge struct {
	Site   string `gorm:"size:16;primaryKey"`
	Number int64  `gorm:"primaryKey;autoIncrement:false"`
	Holder string `fieldcrypt:"high,blindindex"`
}

// TestRebuildBlindIndexesCompositeKey: a model keyed by two columns is
// rebuilt like any other; its values are bound to envelope.RowKeys of the
// key, which reencrypt uses too.
func TestRebuildBlindIndexesCompositeKey(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		ctx := context.Background()
		db, keys := open(t, raw)
		require.NoError(t, gormcrypt.AutoMigrate(db, &Badge{}))
		for i := range 5 {
			require.NoError(t, db.Create(&Badge{Site: []string{"lon", "par"}[i%2], Number: int64(i), Holder: fmt.Sprintf("holder-%d", i)}).Error)
		}
		scope := envelope.Scope{Class: envelope.High}
		keys.Rotate(scope)
		keys.RotateSearch(scope)
		res, err := gormcrypt.RebuildBlindIndexes(ctx, db, &Badge{}, 2)
		require.NoError(t, err)
		require.Len(t, res, 1)
		assert.Equal(t, int64(5), res[0].Rows)
		assert.Equal(t, int64(5), res[0].Updated)
		assert.Zero(t, res[0].Failed)
		var got Badge
		require.NoError(t, db.Where(&Badge{Holder: "holder-3"}).First(&got).Error)
		assert.Equal(t, Badge{Site: "par", Number: 3, Holder: "holder-3"}, got)
	})
}
