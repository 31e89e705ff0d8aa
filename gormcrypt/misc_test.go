package gormcrypt_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

func TestTenant(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, _ := open(t, raw)
		acme := db.WithContext(gormcrypt.WithTenant(context.Background(), "acme"))
		globex := db.WithContext(gormcrypt.WithTenant(context.Background(), "globex"))
		p := samplePatient("t")
		require.NoError(t, acme.Create(&p).Error)

		var got Patient
		require.NoError(t, acme.Where(&Patient{SSN: p.SSN}).First(&got).Error)
		requireSamePatient(t, p, got)

		// Another tenant's search keys do not find it...
		err := globex.Where(&Patient{SSN: p.SSN}).First(&got).Error
		require.ErrorIs(t, err, gorm.ErrRecordNotFound)
		// ...and its keys do not open it.
		err = globex.First(&got, "id = ?", p.ID).Error
		require.ErrorIs(t, err, gormcrypt.ErrDecrypt)
		err = db.First(&got, "id = ?", p.ID).Error
		require.ErrorIs(t, err, gormcrypt.ErrDecrypt)
	})
}

func TestTamperedAndDestroyed(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, keys := open(t, raw)
		p := samplePatient("x")
		require.NoError(t, db.Create(&p).Error)

		v := rawColumn(t, db, "patients", "notes", p.ID).String
		b, err := envelope.DecodeText(v)
		require.NoError(t, err)
		b[len(b)-1] ^= 1
		rawExec(t, db, "UPDATE patients SET notes = ? WHERE id = ?", envelope.EncodeText(b), p.ID.String())
		var got Patient
		err = db.First(&got, "id = ?", p.ID).Error
		require.ErrorIs(t, err, gormcrypt.ErrDecrypt)
		require.ErrorIs(t, err, envelope.ErrAuthentication)
		assert.Nil(t, got.Notes)
		assert.Empty(t, got.Name, "no half-filled result")

		rawExec(t, db, "UPDATE patients SET notes = NULL WHERE id = ?", p.ID.String())
		keys.Forget(envelope.KEKRef{Class: envelope.Low, Version: 1})
		err = db.First(&got, "id = ?", p.ID).Error
		require.ErrorIs(t, err, gormcrypt.ErrDecrypt)
		require.ErrorIs(t, err, envelope.ErrUnknownKey)
		var ge *gormcrypt.Error
		require.True(t, errors.As(err, &ge))
		assert.Equal(t, "Patient", ge.Model)
		assert.Equal(t, p.ID.String(), ge.Row)
	})
}

func TestTags(t *testing.T) {
	type bad1 struct {
		ID uint
		A  string `fieldcrypt:"secret"`
	}
	type bad2 struct {
		ID uint
		A  string `fieldcrypt:"high,deterministic,blindindex"`
	}
	type bad3 struct {
		ID uint
		A  string `fieldcrypt:"high,unique"`
	}
	type bad4 struct {
		ID uint
		A  string `fieldcrypt:"high,blindindex=size:2"`
	}
	type bad5 struct {
		ID uint
		A  string `fieldcrypt:"high,fast"`
	}
	type bad6 struct {
		ID uint
		A  string `fieldcrypt:"public"`
	}
	type good struct {
		ID uint
		A  string `fieldcrypt:"Critical, blindindex=size:8;argon2;column:a_hash, unique"`
		B  []byte `fieldcrypt:"low,deterministic,migrate"`
	}
	db := fresh(t, testsvc.Open(t, testsvc.SQLite), nil)
	require.NoError(t, db.Use(gormcrypt.New(envelopetest.New())))
	for _, m := range []any{&bad1{}, &bad2{}, &bad3{}, &bad4{}, &bad5{}, &bad6{}} {
		_, err := gormcrypt.Fields(db, m)
		require.ErrorIs(t, err, gormcrypt.ErrTag, "%T", m)
	}
	fields, err := gormcrypt.Fields(db, &good{})
	require.NoError(t, err)
	a := envelope.OWASPArgon2
	assert.Equal(t, []gormcrypt.Field{
		{Model: "good", Name: "A", Table: "goods", Column: "a", Class: envelope.Critical, Mode: gormcrypt.Randomized,
			BlindIndex: "a_hash", BlindIndexSpec: envelope.BlindIndex{Size: 8, Argon2: &a}, Unique: true},
		{Model: "good", Name: "B", Table: "goods", Column: "b", Class: envelope.Low, Mode: gormcrypt.Deterministic, Migrate: true},
	}, fields)
	require.NoError(t, gormcrypt.AutoMigrate(db, &good{}))
	g := good{A: "x", B: []byte("y")}
	require.NoError(t, db.Create(&g).Error)
	var got good
	require.NoError(t, db.Where(&good{A: "x"}).First(&got).Error)
	assert.Equal(t, g, got)
}

func TestConcurrent(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, _ := open(t, raw)
		errs := make(chan error, 8)
		for g := range 8 {
			go func() {
				for i := range 5 {
					p := samplePatient(fmt.Sprintf("g%d-%d", g, i))
					if err := db.Create(&p).Error; err != nil {
						errs <- err
						return
					}
					var got Patient
					if err := db.Where(&Patient{SSN: p.SSN}).First(&got).Error; err != nil {
						errs <- err
						return
					}
					if got.Name != p.Name {
						errs <- fmt.Errorf("got %q, want %q", got.Name, p.Name)
						return
					}
				}
				errs <- nil
			}()
		}
		for range 8 {
			require.NoError(t, <-errs)
		}
	})
}

// Note embeds gorm.Model: auto-increment key, timestamps, soft delete.
type Note struct {
	gorm.Model
	Body string `fieldcrypt:"high,deterministic"`
}

func TestSoftDeleteModel(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, _ := open(t, raw)
		require.NoError(t, gormcrypt.AutoMigrate(db, &Note{}))
		n := Note{Body: "remember the milk"}
		require.NoError(t, db.Create(&n).Error)
		require.NotZero(t, n.ID)
		assert.Equal(t, "remember the milk", n.Body)

		var got Note
		require.NoError(t, db.Where(&Note{Body: "remember the milk"}).First(&got).Error)
		assert.Equal(t, n.ID, got.ID)

		require.NoError(t, db.Where(&Note{Body: "remember the milk"}).Delete(&Note{}).Error)
		var live, all []Note
		require.NoError(t, db.Find(&live).Error)
		assert.Empty(t, live)
		require.NoError(t, db.Unscoped().Find(&all).Error)
		require.Len(t, all, 1)
		assert.Equal(t, "remember the milk", all[0].Body)
	})
}
