package gormcrypt_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// legacyPerson is the table before encryption.
type legacyPerson struct {
	ID    uint
	Name  string
	Phone string
	Age   int
}

func (legacyPerson) TableName() string { return "people" }

// Person is the same table with encryption switched on: name and age are
// migrating (legacy plaintext allowed), phone is not.
type Person struct {
	ID    uint
	Name  string `fieldcrypt:"high,migrate"`
	Phone string `fieldcrypt:"high,blindindex,migrate"`
	Age   int    `fieldcrypt:"low,migrate"`
	Extra string `fieldcrypt:"low"`
}

func (Person) TableName() string { return "people" }

func TestMigration(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		ctx := context.Background()
		plain := fresh(t, raw, nil) // no plugin: the application before the upgrade
		require.NoError(t, plain.AutoMigrate(&legacyPerson{}))
		require.NoError(t, plain.Create(&[]legacyPerson{{Name: "Old One", Phone: "555-1", Age: 40}, {Name: "Old Two", Phone: "555-2", Age: 50}}).Error)

		db := fresh(t, raw, nil)
		require.NoError(t, db.Use(gormcrypt.New(envelopetest.New())))
		require.NoError(t, gormcrypt.AutoMigrate(db, &Person{}))

		counts, err := gormcrypt.CountPlaintext(ctx, db, &Person{})
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"name": 2, "phone": 2, "age": 2, "extra": 0}, counts)

		// Mixed reads: legacy rows pass through, new rows decrypt.
		require.NoError(t, db.Create(&Person{Name: "New Three", Phone: "555-3", Age: 60, Extra: "x"}).Error)
		var all []Person
		require.NoError(t, db.Order("id").Find(&all).Error)
		require.Len(t, all, 3)
		assert.Equal(t, []string{"Old One", "Old Two", "New Three"}, []string{all[0].Name, all[1].Name, all[2].Name})
		assert.Equal(t, []int{40, 50, 60}, []int{all[0].Age, all[1].Age, all[2].Age})

		// Encrypting a legacy row: save it through the plugin.
		require.NoError(t, db.Save(&all[0]).Error)
		counts, err = gormcrypt.CountPlaintext(ctx, db, &Person{})
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"name": 1, "phone": 1, "age": 1, "extra": 0}, counts)

		// Equality search only matches encrypted rows (legacy rows have no
		// blind index yet).
		var found []Person
		require.NoError(t, db.Where(&Person{Phone: "555-1"}).Find(&found).Error)
		require.Len(t, found, 1)
		require.NoError(t, db.Where(&Person{Phone: "555-2"}).Find(&found).Error)
		assert.Empty(t, found)

		// A field that does not opt in rejects plaintext.
		rawExec(t, db, "UPDATE people SET extra = ? WHERE id = ?", "leaked", all[1].ID)
		var p Person
		err = db.First(&p, all[1].ID).Error
		require.ErrorIs(t, err, gormcrypt.ErrNotCiphertext)
		assert.NotContains(t, err.Error(), "leaked")

		fields, err := gormcrypt.Fields(db, &Person{})
		require.NoError(t, err)
		require.Len(t, fields, 4)
		assert.Equal(t, gormcrypt.Field{
			Model: "Person", Name: "Phone", Table: "people", Column: "phone", Class: envelope.High,
			Mode: gormcrypt.Randomized, BlindIndex: "phone_bidx", BlindIndexSpec: envelope.BlindIndex{Size: 16}, Migrate: true,
		}, fields[1])
	})
}
