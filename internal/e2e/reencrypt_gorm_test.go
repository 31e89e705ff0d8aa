package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

type member struct {
	ID    uuid.UUID `gorm:"type:varchar(36);primaryKey"`
	Name  string    `fieldcrypt:"high"`
	SSN   string    `fieldcrypt:"critical,blindindex"`
	Email string    `fieldcrypt:"high,deterministic"`
}

// TestReencryptFullOfGormcryptRows: values written by gormcrypt (row-bound
// to a UUID key) are re-encrypted with fresh data keys by the reencrypt
// engine, which renders the row key on its own, and read back through
// gormcrypt, on all three databases.
func TestReencryptFullOfGormcryptRows(t *testing.T) {
	ctx := context.Background()
	testsvc.Each(t, func(t *testing.T, db0 *gorm.DB) {
		dir := t.TempDir()
		cfg := keyring.Config{Name: "e2e", Classes: map[string]keyring.ClassConfig{}}
		for _, c := range []string{"critical", "high"} {
			p := filepath.Join(dir, c+".key")
			_, err := localkms.Create(p)
			require.NoError(t, err)
			cfg.Classes[c] = keyring.ClassConfig{MasterKey: localkms.URI(p)}
		}
		store, err := keyring.NewGormStore(ctx, db0)
		require.NoError(t, err)
		kr, err := keyring.New(cfg, store)
		require.NoError(t, err)
		defer kr.Close()
		_, err = kr.Init(ctx)
		require.NoError(t, err)

		// The application's handle has the plugin; the operator's (db0)
		// does not, as with the CLI.
		sqlDB, err := db0.DB()
		require.NoError(t, err)
		db, err := gorm.Open(db0.Dialector, &gorm.Config{ConnPool: sqlDB, Logger: logger.Discard})
		require.NoError(t, err)
		require.NoError(t, db.Use(gormcrypt.New(kr)))
		require.NoError(t, gormcrypt.AutoMigrate(db, &member{}))
		want := map[uuid.UUID]member{}
		for i := range 30 {
			m := member{ID: uuid.New(), Name: fmt.Sprintf("Name %d", i), SSN: fmt.Sprintf("000-00-%04d", i), Email: fmt.Sprintf("m%d@example.com", i)}
			require.NoError(t, db.Create(&m).Error)
			want[m.ID] = m
		}

		for _, c := range []envelope.Class{envelope.Critical, envelope.High} {
			_, err := kr.Rotate(ctx, envelope.Scope{Class: c})
			require.NoError(t, err)
		}
		env := envelope.New(kr)
		for _, col := range []reencrypt.Column{
			{Table: "members", PK: "id", Column: "name", Class: envelope.High, Text: true},
			{Table: "members", PK: "id", Column: "ssn", Class: envelope.Critical, Text: true},
			{Table: "members", PK: "id", Column: "email", Class: envelope.High, Text: true},
		} {
			sum, err := reencrypt.Run(ctx, db0, env, col, reencrypt.Options{Mode: reencrypt.Full, Workers: 2})
			require.NoError(t, err, "%s: %+v", col.Column, sum)
			assert.Zero(t, sum.Failed, col.Column)
			cen, err := reencrypt.Census(ctx, db0, env, col, reencrypt.CensusOptions{})
			require.NoError(t, err)
			assert.Zero(t, cen.Undecryptable, col.Column)
			for _, k := range cen.Keys {
				if col.Column != "email" {
					assert.Equal(t, uint32(2), k.KEKVersion, "%s moved to v2", col.Column)
				}
			}
		}

		var got []member
		require.NoError(t, db.Find(&got).Error)
		require.Len(t, got, len(want))
		for _, m := range got {
			assert.Equal(t, want[m.ID], m)
		}
		var bySSN member
		require.NoError(t, db.Where(&member{SSN: "000-00-0007"}).First(&bySSN).Error)
		assert.Equal(t, "Name 7", bySSN.Name)
	})
}

type pgMember struct {
	ID   uuid.UUID `gorm:"type:uuid;primaryKey"`
	Name string    `fieldcrypt:"high"`
}

// TestRowBoundUUIDIntoMapsOnPostgres: a row-bound value in a table with a
// native uuid key, read into maps (the path without a struct field to take
// the key from), opens with the same row key it was bound to at insert.
func TestRowBoundUUIDIntoMapsOnPostgres(t *testing.T) {
	ctx := context.Background()
	raw := testsvc.Open(t, testsvc.Postgres)
	dir := t.TempDir()
	p := filepath.Join(dir, "high.key")
	_, err := localkms.Create(p)
	require.NoError(t, err)
	kr, err := keyring.New(keyring.Config{Name: "e2e", Classes: map[string]keyring.ClassConfig{"high": {MasterKey: localkms.URI(p)}}},
		keyring.NewFileStore(filepath.Join(dir, "kr.json")))
	require.NoError(t, err)
	defer kr.Close()
	require.NoError(t, raw.Use(gormcrypt.New(kr)))
	require.NoError(t, gormcrypt.AutoMigrate(raw, &pgMember{}))
	m := pgMember{ID: uuid.New(), Name: "Grace"}
	require.NoError(t, raw.WithContext(ctx).Create(&m).Error)
	var rows []map[string]any
	require.NoError(t, raw.Model(&pgMember{}).Find(&rows).Error)
	require.Len(t, rows, 1)
	assert.Equal(t, "Grace", rows[0]["name"])
}
