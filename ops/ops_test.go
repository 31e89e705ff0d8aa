package ops_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/ops"
	"github.com/fieldcrypt/fieldcrypt/reencrypt"
)

// types counts the recorded events by type.
func types(m *audit.Memory) map[audit.Type]int {
	out := map[audit.Type]int{}
	for _, ev := range m.Events() {
		out[ev.Type]++
	}
	return out
}

// project writes a configuration for dsn with local master keys and one
// encrypted column, customers.secret, holding plaintext rows.
func project(t *testing.T, d testsvc.Dialect) *config.Config {
	t.Helper()
	db, dsn := testsvc.OpenDSN(t, d)
	require.NoError(t, db.Exec(`CREATE TABLE customers (id BIGINT PRIMARY KEY, secret TEXT)`).Error)
	for i := 1; i <= 5; i++ {
		require.NoError(t, db.Exec(`INSERT INTO customers (id, secret) VALUES (?, ?)`, i, fmt.Sprintf("secret-%d", i)).Error)
	}
	dir := t.TempDir()
	cfg, err := config.Load(dir, func(string) string { return "" }, config.Overrides{
		Database: dsn, MasterKeys: []string{"critical=local://keys/critical.key"}, Tenant: "",
	})
	require.NoError(t, err)
	cfg.Columns = []config.Column{{Table: "customers", Column: "secret", PK: "id", Class: "critical", Mode: "randomized", RowBound: true, Encoding: "text"}}
	created, err := ops.CreateLocalKeys(cfg)
	require.NoError(t, err)
	require.Equal(t, []string{filepath.Join(dir, "keys", "critical.key")}, created)
	return cfg
}

// TestWorkflows runs the operator workflows through the Go API on every
// database: setup, census, encrypt-existing, rotate, reencrypt, guarded
// destroy; each records its own audit events.
func TestWorkflows(t *testing.T) {
	for _, d := range testsvc.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			cfg := project(t, d)
			ev := &audit.Memory{}
			_, err := ops.Open(ctx, cfg, ops.Options{Audit: ev})
			require.ErrorIs(t, err, ops.ErrNotSetUp, "no keyring tables yet")
			assert.Equal(t, fielderr.InvalidInput, fielderr.KindOf(err))

			op, err := ops.Open(ctx, cfg, ops.Options{Migrate: true, Audit: ev})
			require.NoError(t, err)
			defer op.Close()
			setup, err := op.Setup(ctx)
			require.NoError(t, err)
			require.Len(t, setup.Created, 1)
			again, err := op.Setup(ctx)
			require.NoError(t, err)
			assert.Empty(t, again.Created)
			assert.Len(t, again.Existing, 1)

			c, err := op.Census(ctx, ops.CensusOptions{Verify: true})
			require.NoError(t, err)
			assert.Equal(t, int64(5), c.Plaintext)

			res, err := op.Reencrypt(ctx, cfg.Columns, ops.ReencryptOptions{Options: reencrypt.Options{Mode: reencrypt.EncryptExisting}})
			require.NoError(t, err)
			assert.Equal(t, int64(5), res.Changed)
			_, err = op.Rotate(ctx, []envelope.Class{envelope.Critical})
			require.NoError(t, err)
			res, err = op.Reencrypt(ctx, cfg.Columns, ops.ReencryptOptions{})
			require.NoError(t, err)
			assert.Equal(t, int64(5), res.Changed)

			c, err = op.Census(ctx, ops.CensusOptions{Verify: true})
			require.NoError(t, err)
			require.Equal(t, []ops.VersionCount{{Class: "critical", Version: 2, Suite: "randomized", Count: 5}}, c.Versions)

			// v1 is still the search key: refused by the keyring; then a
			// destroy without confirmation is refused by the operation
			ref := envelope.KEKRef{Class: envelope.Critical, Version: 1}
			_, err = op.Destroy(ctx, ref, ops.DestroyOptions{Force: true})
			require.ErrorIs(t, err, keyring.ErrRefused)
			_, err = op.RotateSearch(ctx, []envelope.Class{envelope.Critical}, false, false)
			require.NoError(t, err)
			_, err = op.RotateSearch(ctx, []envelope.Class{envelope.Critical}, true, false)
			require.NoError(t, err)
			_, err = op.Destroy(ctx, ref, ops.DestroyOptions{Force: true})
			require.ErrorIs(t, err, ops.ErrNotConfirmed)
			dr, err := op.Destroy(ctx, ref, ops.DestroyOptions{Force: true, Confirm: func(context.Context, ops.Question) error { return nil }})
			require.NoError(t, err)
			assert.Zero(t, dr.ValuesFound)
			assert.Equal(t, keyring.StateDestroyed, dr.KEK.State)

			// the v2 values are still there: destroying v2 is refused by the census
			_, err = op.Rotate(ctx, []envelope.Class{envelope.Critical})
			require.NoError(t, err)
			_, err = op.Destroy(ctx, envelope.KEKRef{Class: envelope.Critical, Version: 2}, ops.DestroyOptions{Force: true,
				Confirm: func(context.Context, ops.Question) error { return errors.New("no") }})
			require.Error(t, err)

			types := types(ev)
			assert.Equal(t, 2, types[audit.ReencryptStarted], "the engine records its runs")
			assert.Equal(t, 2, types[audit.ReencryptFinished])
			assert.Positive(t, types[audit.KEKDestroyed])
			for _, e := range ev.Events() {
				if e.Type == audit.KEKDestroyed && e.Outcome != audit.Error {
					assert.Equal(t, map[string]int64{"values_found": 0, "forced": 1}, e.Counts, "the check's findings ride on the keyring's event")
				}
			}
		})
	}
}
