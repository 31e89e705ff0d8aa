package gormcrypt_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// legacyMember is the table before encryption.
type legacyMember struct {
	ID     uint
	SSN    string
	MRN    string
	Age    int
	Active bool
	Joined time.Time
}

func (legacyMember) TableName() string { return "members" }

// Member is the same table with encryption on, every field searchable
// through a blind index, SSN unique.
type Member struct {
	ID     uint
	SSN    string    `fieldcrypt:"critical,blindindex,unique,migrate"`
	MRN    string    `fieldcrypt:"high,blindindex,migrate"`
	Age    int       `fieldcrypt:"low,blindindex,migrate"`
	Active bool      `fieldcrypt:"low,migrate"`
	Joined time.Time `fieldcrypt:"low,migrate"`
}

func (Member) TableName() string { return "members" }

func ssnOf(i int) string { return fmt.Sprintf("900-%02d-%04d", i%97, i) }

// TestEncryptExistingSearchable is issue 16 §1: after the documented
// migration (tag migrate, AutoMigrate, encrypt the existing rows, drop
// migrate) equality search finds every migrated row and the unique blind
// index holds, on every database.
func TestEncryptExistingSearchable(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		ctx := context.Background()
		const n = 400
		legacy := fresh(t, raw, nil)
		require.NoError(t, legacy.AutoMigrate(&legacyMember{}))
		joined := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
		rows := make([]legacyMember, n)
		for i := range rows {
			rows[i] = legacyMember{SSN: ssnOf(i + 1), MRN: fmt.Sprintf("mrn-%d", (i+1)%40), Age: 20 + (i+1)%50, Active: i%2 == 0, Joined: joined}
		}
		require.NoError(t, legacy.CreateInBatches(&rows, 100).Error)

		db := fresh(t, raw, nil)
		sink := &audit.Memory{}
		require.NoError(t, db.Use(gormcrypt.New(envelopetest.New(), gormcrypt.WithAudit(sink))))
		require.NoError(t, gormcrypt.AutoMigrate(db, &Member{}))

		var found []Member
		require.NoError(t, db.Where(&Member{SSN: ssnOf(7)}).Find(&found).Error)
		assert.Empty(t, found, "before the migration legacy rows have no index")

		cols, err := gormcrypt.MigrationColumns(ctx, db, &Member{})
		require.NoError(t, err)
		require.Len(t, cols, 5)
		assert.Equal(t, []reencrypt.BlindIndex{{Column: "ssn_bidx", Spec: cols[0].BlindIndexes[0].Spec}}, cols[0].BlindIndexes)
		assert.True(t, cols[0].RowBound)
		assert.True(t, cols[0].Text)
		res, err := reencrypt.Census(ctx, db, nil, cols[0], reencrypt.CensusOptions{})
		require.NoError(t, err)
		assert.Equal(t, int64(n), res.Plaintext)

		sums, err := gormcrypt.EncryptExisting(ctx, db, &Member{}, reencrypt.Options{BatchSize: 64, ChunkSize: 150, Workers: 2})
		require.NoError(t, err)
		require.Len(t, sums, 5)
		for _, s := range sums {
			assert.Equal(t, int64(n), s.Changed)
			assert.Zero(t, s.Failed)
		}
		// The jobs are recorded in the plugin's audit sink.
		finished := map[string]bool{}
		for _, ev := range sink.Events() {
			if ev.Type == audit.ReencryptFinished {
				finished[ev.Column] = true
			}
		}
		assert.Equal(t, map[string]bool{"ssn": true, "mrn": true, "age": true, "active": true, "joined": true}, finished)
		counts, err := gormcrypt.CountPlaintext(ctx, db, &Member{})
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"ssn": 0, "mrn": 0, "age": 0, "active": 0, "joined": 0}, counts)

		// Every migrated row is found, by every index.
		for i := 1; i <= n; i += n / 20 {
			require.NoError(t, db.Where(&Member{SSN: ssnOf(i)}).Find(&found).Error)
			require.Len(t, found, 1, "ssn of row %d", i)
			assert.Equal(t, uint(i), found[0].ID)
			assert.Equal(t, ssnOf(i), found[0].SSN)
			assert.Equal(t, i%2 == 1, found[0].Active)
			assert.True(t, joined.Equal(found[0].Joined), "joined: %v", found[0].Joined)
		}
		require.NoError(t, db.Where(&Member{MRN: "mrn-7"}).Find(&found).Error)
		assert.Len(t, found, n/40)
		require.NoError(t, db.Where(&Member{Age: 27}).Find(&found).Error)
		assert.Len(t, found, n/50)

		// The unique index holds on migrated rows.
		err = db.Create(&Member{SSN: ssnOf(11), MRN: "x", Joined: joined}).Error
		require.Error(t, err, "a duplicate of a migrated SSN")
		assert.NotContains(t, err.Error(), ssnOf(11))

		// Byte-identical to what gormcrypt writes for the same value.
		fresh := Member{SSN: "111-11-1111", MRN: "mrn-7", Age: 27, Joined: joined}
		require.NoError(t, db.Create(&fresh).Error)
		var idx []string
		require.NoError(t, db.Raw("SELECT DISTINCT mrn_bidx FROM members WHERE id IN (?, ?)", 7, fresh.ID).Scan(&idx).Error)
		assert.Len(t, idx, 1, "the migrated row and the new row have the same index")
		require.NoError(t, db.Raw("SELECT DISTINCT age_bidx FROM members WHERE id IN (?, ?)", 7, fresh.ID).Scan(&idx).Error)
		assert.Len(t, idx, 1)

		// A migration run before indexes were written: census names the
		// rows, a rerun repairs them.
		rawExec(t, db, "UPDATE members SET ssn_bidx = NULL WHERE id <= 30")
		res, err = reencrypt.Census(ctx, db, nil, cols[0], reencrypt.CensusOptions{})
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"ssn_bidx": 30}, res.MissingIndex)
		require.NoError(t, db.Where(&Member{SSN: ssnOf(11)}).Find(&found).Error)
		assert.Empty(t, found)
		sums, err = gormcrypt.EncryptExisting(ctx, db, &Member{}, reencrypt.Options{})
		require.NoError(t, err)
		assert.Equal(t, int64(30), sums[0].Indexed)
		assert.Zero(t, sums[0].Changed)
		require.NoError(t, db.Where(&Member{SSN: ssnOf(11)}).Find(&found).Error)
		assert.Len(t, found, 1)
		require.Error(t, db.Create(&Member{SSN: ssnOf(12), Joined: joined}).Error, "unique again")
	})
}

func TestMigrationColumnsNeedsPlugin(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		_, err := gormcrypt.MigrationColumns(context.Background(), fresh(t, raw, nil), &Member{})
		require.Error(t, err)
	})
}
