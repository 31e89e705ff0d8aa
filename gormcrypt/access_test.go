package gormcrypt_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// accessDB is a database with the plugin recording into mem, and one
// patient with a record (for Preload).
func accessDB(t *testing.T, raw *gorm.DB, mem audit.Sink, ps audit.Policies) (*gorm.DB, Patient) {
	t.Helper()
	db := fresh(t, raw, nil)
	p := gormcrypt.New(envelopetest.New()).WithAudit(mem)
	if ps != nil {
		p = p.WithAccessPolicy(ps)
	}
	require.NoError(t, db.Use(p))
	require.NoError(t, db.Migrator().DropTable(&Doctor{}, &Patient{}, &Record{}))
	require.NoError(t, gormcrypt.AutoMigrate(db, &Doctor{}, &Patient{}, &Record{}))
	pt := samplePatient("acc")
	require.NoError(t, db.Create(&pt).Error)
	require.NoError(t, db.Create(&Record{PatientID: pt.ID, Text: "record-acc"}).Error)
	return db, pt
}

// TestPurposeRequired: a person reading critical data without a purpose
// is refused on every read path that decrypts, before anything of the
// class is decrypted, with an empty destination and one decrypt.refused.
func TestPurposeRequired(t *testing.T) {
	type path struct {
		name string
		read func(db *gorm.DB, p Patient) (dest any, err error)
	}
	paths := []path{
		{"First", func(db *gorm.DB, p Patient) (any, error) {
			var got Patient
			err := db.First(&got, "id = ?", p.ID).Error
			return got, err
		}},
		{"Find", func(db *gorm.DB, p Patient) (any, error) {
			var got []Patient
			err := db.Find(&got).Error
			return got, err
		}},
		{"Where blind index", func(db *gorm.DB, p Patient) (any, error) {
			var got Patient
			err := db.Where(&Patient{SSN: p.SSN}).First(&got).Error
			return got, err
		}},
		{"Find into a map", func(db *gorm.DB, p Patient) (any, error) {
			got := map[string]any{}
			err := db.Model(&Patient{}).Where("id = ?", p.ID).Find(&got).Error
			return got, err
		}},
		{"Table into maps", func(db *gorm.DB, p Patient) (any, error) {
			var got []map[string]any
			err := db.Table("patients").Find(&got).Error
			return got, err
		}},
		{"Raw Scan", func(db *gorm.DB, p Patient) (any, error) {
			var got []map[string]any
			err := db.Raw("SELECT id, notes FROM patients").Scan(&got).Error
			return got, err
		}},
		{"Pluck", func(db *gorm.DB, p Patient) (any, error) {
			var got []string
			err := db.Model(&Patient{}).Pluck("ssn", &got).Error
			return got, err
		}},
		{"Rows", func(db *gorm.DB, p Patient) (any, error) {
			rows, err := db.Model(&Patient{}).Select("id", "ssn").Rows()
			if err == nil {
				defer rows.Close()
				for rows.Next() {
					var id, ssn string
					if err := rows.Scan(&id, &ssn); err != nil {
						return nil, err
					}
					return ssn, nil
				}
				err = rows.Err()
			}
			return nil, err
		}},
		{"Row", func(db *gorm.DB, p Patient) (any, error) {
			var id, ssn string
			err := db.Model(&Patient{}).Select("id", "ssn").Where("id = ?", p.ID).Row().Scan(&id, &ssn)
			return ssn, err
		}},
		{"Preload", func(db *gorm.DB, p Patient) (any, error) {
			var got Patient
			err := db.Select("id", "age").Preload("Records").First(&got, "id = ?", p.ID).Error
			return got.Records, err
		}},
	}
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			mem := &audit.Memory{}
			db, pt := accessDB(t, testsvc.Open(t, d), mem, nil)
			person := audit.WithActor(context.Background(), audit.Person("support:jane"))
			for _, pa := range paths {
				t.Run(pa.name, func(t *testing.T) {
					before := len(mem.Events())
					dest, err := pa.read(db.WithContext(person).Session(&gorm.Session{}), pt)
					require.Error(t, err)
					assert.ErrorIs(t, err, gormcrypt.ErrPurposeRequired)
					assert.ErrorIs(t, err, audit.ErrPurposeRequired)
					var ge *gormcrypt.Error
					require.True(t, errors.As(err, &ge))
					assert.NotContains(t, err.Error(), pt.SSN)
					assert.NotContains(t, toString(dest), pt.SSN, "nothing decrypted reaches the destination")
					assert.NotContains(t, toString(dest), "record-acc")
					evs := mem.Events()[before:]
					require.Len(t, evs, 1, "exactly one event, the refusal: %+v", evs)
					assert.Equal(t, audit.DecryptRefused, evs[0].Type)
					assert.Equal(t, "support:jane", evs[0].Actor)
					assert.Equal(t, audit.KindPerson, evs[0].ActorKind)
					assert.Equal(t, "critical", evs[0].Class)
					assert.Equal(t, audit.Error, evs[0].Outcome)

					// The same read with a purpose succeeds and is recorded
					// with it.
					ctx := audit.WithPurpose(person, "ticket 4711")
					before = len(mem.Events())
					_, err = pa.read(db.WithContext(ctx).Session(&gorm.Session{}), pt)
					if pa.name == "Pluck" {
						// Pluck cannot read a row-bound value (no primary key):
						// refused by the guard after the purpose check passed.
						require.ErrorIs(t, err, gormcrypt.ErrUnsupportedPath)
						return
					}
					require.NoError(t, err)
					var last audit.Event
					for _, e := range mem.Events()[before:] {
						if e.Class == "critical" {
							last = e
						}
					}
					assert.Equal(t, audit.DecryptAccess, last.Type)
					assert.Equal(t, "ticket 4711", last.Purpose)
					assert.Equal(t, "support:jane", last.Actor)
				})
			}

			// Reads that decrypt nothing critical need no purpose.
			var got Patient
			require.NoError(t, db.WithContext(person).Select("id", "name").First(&got, "id = ?", pt.ID).Error)
			assert.Equal(t, pt.Name, got.Name)
			require.NoError(t, db.WithContext(person).Omit("ssn", "notes").First(&got, "id = ?", pt.ID).Error)
			var n int64
			require.NoError(t, db.WithContext(person).Model(&Patient{}).Count(&n).Error)
			assert.Equal(t, int64(1), n)
			// A service, or a read without an actor, needs none either.
			require.NoError(t, db.WithContext(audit.WithActor(context.Background(), audit.Service("billing"))).First(&got, "id = ?", pt.ID).Error)
			assert.Equal(t, pt.SSN, got.SSN)
			require.NoError(t, db.First(&got, "id = ?", pt.ID).Error)
		})
	}
}

func TestAccessPolicyRecording(t *testing.T) {
	mem := &audit.Memory{}
	db, pt := accessDB(t, testsvc.Open(t, testsvc.SQLite), mem, audit.Policies{
		"high":     {Record: audit.RecordNone},
		"moderate": {Record: audit.RecordNone},
		"low":      {Record: audit.RecordNone},
		"critical": {Record: audit.RecordAll, Purpose: audit.PurposeAlways},
	})
	var got Patient
	err := db.First(&got, "id = ?", pt.ID).Error
	require.ErrorIs(t, err, gormcrypt.ErrPurposeRequired, "always: even a read without an actor")
	ctx := audit.WithPurpose(audit.WithActor(context.Background(), audit.Service("billing")), "invoice run")
	require.NoError(t, db.WithContext(ctx).First(&got, "id = ?", pt.ID).Error)
	classes := map[string]int{}
	for _, e := range mem.Events() {
		if e.Type == audit.DecryptAccess {
			classes[e.Class]++
			assert.Equal(t, "billing", e.Actor)
			assert.Equal(t, audit.KindService, e.ActorKind)
			assert.Equal(t, "invoice run", e.Purpose)
			assert.Equal(t, pt.ID.String(), e.Row)
		}
	}
	assert.Equal(t, map[string]int{"critical": 2}, classes, "ssn and notes recorded, other classes not")

	require.Error(t, fresh(t, testsvc.Open(t, testsvc.SQLite), nil).Use(
		gormcrypt.New(envelopetest.New()).WithAccessPolicy(audit.Policies{"high": {Record: "sometimes"}})), "an invalid policy fails Use")
}

// failingSink reports that it cannot record.
type failingSink struct{ audit.Memory }

func (*failingSink) Err() error { return errors.New("disk full") }

func TestAuditUnavailableRefusesRecordedReads(t *testing.T) {
	sink := &failingSink{}
	db, pt := accessDB(t, testsvc.Open(t, testsvc.SQLite), sink, audit.Policies{
		"high": {Record: audit.RecordNone}, "moderate": {Record: audit.RecordNone}, "low": {Record: audit.RecordNone},
	})
	var got Patient
	err := db.First(&got, "id = ?", pt.ID).Error
	require.ErrorIs(t, err, gormcrypt.ErrAuditUnavailable, "critical records every decrypt: no audit, no read")
	assert.Empty(t, got.SSN)
	require.NoError(t, db.Select("id", "name").First(&got, "id = ?", pt.ID).Error, "unrecorded classes still read")
}

func toString(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprintf("%+v", v)
}

func TestRebuildBlindIndexesFollowsThePolicy(t *testing.T) {
	mem := &audit.Memory{}
	db, pt := accessDB(t, testsvc.Open(t, testsvc.SQLite), mem, nil)
	person := audit.WithActor(context.Background(), audit.Person("ops:ann"))
	_, err := gormcrypt.RebuildBlindIndexes(person, db, &Patient{}, 10)
	require.ErrorIs(t, err, gormcrypt.ErrPurposeRequired)
	res, err := gormcrypt.RebuildBlindIndexes(audit.WithPurpose(person, "search key rotation"), db, &Patient{}, 10)
	require.NoError(t, err)
	require.Len(t, res, 1)
	var access []audit.Event
	for _, e := range mem.Events() {
		if e.Type == audit.DecryptAccess && e.Column == "ssn" && e.Purpose == "search key rotation" {
			access = append(access, e)
		}
	}
	require.Len(t, access, 1, "the rebuild's decrypt is recorded")
	assert.Equal(t, pt.ID.String(), access[0].Row)
}
