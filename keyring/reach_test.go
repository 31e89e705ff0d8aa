package keyring

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// TestRotationReachesRunningProcess measures, on the real clock and a
// shared keyring store, how long a rotation made by an operator's process
// takes to reach an application that keeps sealing: the bound is
// StateRefresh plus one store read, and the state refresh itself makes no
// KMS call (the application unwraps the new version once, nothing more).
// The elapsed time is logged (docs/performance.md), not asserted against
// a deadline: only the order of events and the KMS count are checked.
func TestRotationReachesRunningProcess(t *testing.T) {
	const refresh = time.Second
	testsvc.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		p := filepath.Join(t.TempDir(), "critical.key")
		_, err := localkms.Create(p)
		require.NoError(t, err)
		cfg := Config{Name: "reach", StateRefresh: refresh, Classes: map[string]ClassConfig{
			"critical": {MasterKey: localkms.URI(p)},
		}}
		store, err := NewGormStore(ctx, db)
		require.NoError(t, err)
		operator, err := New(cfg, store)
		require.NoError(t, err)
		defer operator.Close()
		_, err = operator.Init(ctx)
		require.NoError(t, err)

		app, err := New(cfg, store)
		require.NoError(t, err)
		defer app.Close()
		env := envelope.New(app)
		b := envelope.Binding{Class: envelope.Critical, Table: "t", Column: "c"}

		// The application seals a value every 5 ms and records when the
		// first one under the new version appears.
		var seen atomic.Pointer[time.Time]
		var version atomic.Uint32
		stop := make(chan struct{})
		done := make(chan struct{})
		seal := func() uint32 {
			ct, err := env.Seal(ctx, b, []byte("value"))
			require.NoError(t, err)
			h, err := envelope.InspectHeader(ct)
			require.NoError(t, err)
			return h.KEKVersion
		}
		require.Equal(t, uint32(1), seal())
		before := app.Stats()
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				v := seal()
				if v > 1 && seen.Load() == nil {
					now := time.Now()
					seen.Store(&now)
				}
				version.Store(v)
			}
		}()

		rotated, err := operator.Rotate(ctx, envelope.Scope{Class: envelope.Critical})
		require.NoError(t, err)
		at := time.Now()
		require.Eventually(t, func() bool { return seen.Load() != nil }, MaxStateAge, 10*time.Millisecond,
			"the rotation never reached the running process")
		close(stop)
		<-done
		took := seen.Load().Sub(at)
		t.Logf("rotation to v%d reached the running process after %v (StateRefresh %v)", rotated.Ref.Version, took.Round(time.Millisecond), refresh)
		assert.Equal(t, rotated.Ref.Version, version.Load())
		after := app.Stats()
		assert.Equal(t, uint64(1), after.KMSUnwrapCalls-before.KMSUnwrapCalls,
			"one KMS unwrap for the new version; refreshing the state costs none")
		assert.Zero(t, after.KMSWrapCalls-before.KMSWrapCalls)
	})
}
