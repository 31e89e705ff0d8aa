package gormcrypt_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

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
