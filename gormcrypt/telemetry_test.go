package gormcrypt_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry/telemetrytest"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// TestMetrics: WithMeterProvider counts the plugin's seals (every kind)
// and opens; no label carries a value.
func TestMetrics(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		m := telemetrytest.New(t)
		db := fresh(t, raw, nil)
		require.NoError(t, db.Use(gormcrypt.New(envelopetest.New(), gormcrypt.WithMeterProvider(m))))
		require.NoError(t, gormcrypt.AutoMigrate(db, &Doctor{}, &Patient{}, &Record{}))
		p := samplePatient("canary")
		require.NoError(t, db.Create(&p).Error)
		var got Patient
		require.NoError(t, db.First(&got, "id = ?", p.ID).Error)
		require.Equal(t, p.Name, got.Name)

		assert.Positive(t, m.Sum(t, "fieldcrypt.seal", map[string]string{"class": "critical", "kind": "random", "outcome": "ok"}))
		assert.Positive(t, m.Sum(t, "fieldcrypt.seal", map[string]string{"class": "high", "kind": "deterministic", "outcome": "ok"}))
		assert.Positive(t, m.Sum(t, "fieldcrypt.seal", map[string]string{"class": "critical", "kind": "blindindex", "outcome": "ok"}))
		assert.Positive(t, m.Sum(t, "fieldcrypt.open", map[string]string{"class": "high", "outcome": "ok"}))
		assert.Zero(t, m.Sum(t, "fieldcrypt.open", map[string]string{"outcome": "auth_failed"}))
		for _, pt := range m.Collect(t) {
			for k, v := range pt.Attrs {
				assert.NotContains(t, v, "canary", "%s label %s", pt.Metric, k)
			}
		}
	})
}
