package gormcrypt_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

func TestAuditReadPath(t *testing.T) {
	raw := testsvc.Open(t, testsvc.SQLite)
	tests := []struct {
		name       string
		sink       func(m *audit.Memory) audit.Sink
		wantAccess bool
	}{
		{"every access", func(m *audit.Memory) audit.Sink { return m }, true},
		{"failures only", func(m *audit.Memory) audit.Sink { return audit.Sampled(m, 0) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := &audit.Memory{}
			db := fresh(t, raw, nil)
			require.NoError(t, db.Use(gormcrypt.New(envelopetest.New(), gormcrypt.WithAudit(tc.sink(mem)))))
			require.NoError(t, db.Migrator().DropTable(&Doctor{}, &Patient{}, &Record{}))
			require.NoError(t, gormcrypt.AutoMigrate(db, &Doctor{}, &Patient{}, &Record{}))
			p := samplePatient("a")
			require.NoError(t, db.Create(&p).Error)
			var got Patient
			require.NoError(t, db.First(&got, "id = ?", p.ID).Error)
			var access int
			for _, e := range mem.Events() {
				if e.Type == audit.DecryptAccess {
					access++
					assert.Equal(t, "patients", e.Table)
					assert.Equal(t, p.ID.String(), e.Row, "row-bound values name their row")
					assert.NotZero(t, e.KEKVersion)
				}
			}
			assert.Equal(t, tc.wantAccess, access > 0)

			// Tamper with one value: a decrypt.failed event names the row.
			v := rawColumn(t, db, "patients", "notes", p.ID).String
			b, err := envelope.DecodeText(v)
			require.NoError(t, err)
			b[len(b)-1] ^= 1
			rawExec(t, db, "UPDATE patients SET notes = ? WHERE id = ?", envelope.EncodeText(b), p.ID.String())
			require.Error(t, db.Session(&gorm.Session{}).First(&got, "id = ?", p.ID).Error)
			var failed []audit.Event
			for _, e := range mem.Events() {
				if e.Type == audit.DecryptFailed {
					failed = append(failed, e)
				}
			}
			require.Len(t, failed, 1)
			assert.Equal(t, "notes", failed[0].Column)
			assert.Equal(t, p.ID.String(), failed[0].Row)
			assert.Equal(t, audit.Error, failed[0].Outcome)
			assert.NotContains(t, failed[0].Error, *p.Notes)
		})
	}
}
