package gormcrypt_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring"
)

func TestNilKeySourceIsRefusedAtUse(t *testing.T) {
	var kr *keyring.Keyring // the result of an ignored error
	cases := map[string]envelope.KeySource{"nil": nil, "typed nil pointer": kr}
	for name, keys := range cases {
		t.Run(name, func(t *testing.T) {
			db := fresh(t, testsvc.Open(t, testsvc.SQLite), nil)
			err := db.Use(gormcrypt.New(keys))
			require.ErrorIs(t, err, gormcrypt.ErrNoKeySource)
			// Nothing was registered: the next write cannot panic in gormcrypt.
			assert.NotPanics(t, func() { _ = db.AutoMigrate(&Doctor{}) })
		})
	}
}

// failingKeys fails every key lookup as a KMS outage would, counting calls.
type failingKeys struct{ calls atomic.Int64 }

func (f *failingKeys) err() error {
	f.calls.Add(1)
	return errors.Join(envelope.ErrKeyUnavailable, errors.New("kms unreachable"))
}
func (f *failingKeys) PrimaryKEK(context.Context, envelope.Scope) (*envelope.KEK, error) {
	return nil, f.err()
}
func (f *failingKeys) KEK(context.Context, envelope.KEKRef) (*envelope.KEK, error) {
	return nil, f.err()
}
func (f *failingKeys) SearchKEKs(context.Context, envelope.Scope) ([]*envelope.KEK, error) {
	return nil, f.err()
}

// TestReadFailsFastWhenKeysAreUnavailable: a read of many rows whose key
// cannot be obtained fails on the first value with one short error; it
// does not ask the key source once per value.
func TestReadFailsFastWhenKeysAreUnavailable(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, _ := open(t, raw)
		var docs []Doctor
		for i := range 200 {
			docs = append(docs, Doctor{Name: "Dr " + strings.Repeat("x", i%5), License: "L"})
		}
		require.NoError(t, db.CreateInBatches(&docs, 50).Error)

		down := &failingKeys{}
		reader := fresh(t, raw, nil)
		require.NoError(t, reader.Use(gormcrypt.New(down)))
		require.NoError(t, gormcrypt.Register(reader, &Doctor{}))

		var all []Doctor
		err := reader.Find(&all).Error
		require.ErrorIs(t, err, envelope.ErrKeyUnavailable)
		require.ErrorIs(t, err, gormcrypt.ErrDecrypt)
		assert.Empty(t, all)
		assert.Less(t, len(err.Error()), 600, "one error, not one per value")
		assert.LessOrEqual(t, down.calls.Load(), int64(2))

		down.calls.Store(0)
		var batch []Doctor
		err = reader.FindInBatches(&batch, 50, func(*gorm.DB, int) error { return nil }).Error
		require.ErrorIs(t, err, envelope.ErrKeyUnavailable)
		assert.LessOrEqual(t, down.calls.Load(), int64(2))

		down.calls.Store(0)
		var ms []map[string]any
		err = reader.Table("doctors").Find(&ms).Error
		require.ErrorIs(t, err, envelope.ErrKeyUnavailable)
		assert.Empty(t, ms)
		assert.LessOrEqual(t, down.calls.Load(), int64(2))
	})
}

type serialNote struct {
	ID   uint
	Body string `fieldcrypt:"high"`
	Fast string `fieldcrypt:"high,unbound"`
}

// TestGeneratedKeysAreRowBound: values created with a key the database
// generates are bound to it (moved to another row, they do not open),
// except in fields tagged unbound.
func TestGeneratedKeysAreRowBound(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db := fresh(t, raw, nil)
		require.NoError(t, db.Use(gormcrypt.New(envelopetest.New())))
		require.NoError(t, gormcrypt.AutoMigrate(db, &serialNote{}))
		notes := []serialNote{{Body: "one", Fast: "f1"}, {Body: "two", Fast: "f2"}, {Body: "three", Fast: "f3"}}
		require.NoError(t, db.Create(&notes).Error)
		single := serialNote{Body: "four", Fast: "f4"}
		require.NoError(t, db.Create(&single).Error)
		for _, n := range append(notes, single) {
			var got serialNote
			require.NoError(t, db.First(&got, n.ID).Error)
			assert.Equal(t, n.Body, got.Body)
			assert.Equal(t, n.Fast, got.Fast)
		}
		// Swap stored values between rows, around the plugin.
		body := rawColumn(t, db, "serial_notes", "body", notes[0].ID)
		fast := rawColumn(t, db, "serial_notes", "fast", notes[0].ID)
		rawExec(t, db, "UPDATE serial_notes SET body = ?, fast = ? WHERE id = ?", body.String, fast.String, notes[1].ID)
		var got serialNote
		err := db.First(&got, notes[1].ID).Error
		require.ErrorIs(t, err, envelope.ErrAuthentication, "a row-bound body moved to another row must not open")
		var fastOnly serialNote
		require.NoError(t, db.Select("id", "fast").First(&fastOnly, notes[1].ID).Error, "unbound opts out")
		assert.Equal(t, "f1", fastOnly.Fast)
	})
}
