package gormcrypt_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

func TestSmoke(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, _ := open(t, raw)
		p := samplePatient("1")
		want := p
		require.NoError(t, db.Create(&p).Error)
		requireSamePatient(t, want, p)
		requireAllEncrypted(t, db)
		var got Patient
		require.NoError(t, db.First(&got, "id = ?", p.ID).Error)
		requireSamePatient(t, want, got)
		var bySSN Patient
		require.NoError(t, db.Where(&Patient{SSN: p.SSN}).First(&bySSN).Error)
		require.Equal(t, p.ID, bySSN.ID)
	})
}

// TestSealSuite: WithSealSuite(SuiteRandomizedSIVWrap) seals randomized
// values in suite 0x04; the plugin reads them back, and values of the
// default suite written before the change, on every database.
func TestSealSuite(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, keys := open(t, raw)
		first := samplePatient("1")
		require.NoError(t, db.Create(&first).Error)

		siv := fresh(t, raw, nil)
		require.NoError(t, siv.Use(gormcrypt.New(keys, gormcrypt.WithSealSuite(envelope.SuiteRandomizedSIVWrap))))
		p := samplePatient("2")
		want := p
		require.NoError(t, siv.Create(&p).Error)
		requireAllEncrypted(t, siv)
		suites := map[envelope.Suite]int{}
		for _, row := range rawRows(t, siv, "patients", "name") {
			h, err := envelope.InspectHeader([]byte(row["name"].String))
			require.NoError(t, err)
			suites[h.Suite]++
		}
		assert.Equal(t, map[envelope.Suite]int{envelope.SuiteRandomizedDerivedWrap: 1, envelope.SuiteRandomizedSIVWrap: 1}, suites)
		for _, w := range []Patient{samplePatient("1"), want} {
			var got Patient
			require.NoError(t, siv.Where(&Patient{SSN: w.SSN}).First(&got).Error)
			w.ID = got.ID
			requireSamePatient(t, w, got)
		}
	})
}
