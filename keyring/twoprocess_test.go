package keyring

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// The two-process test: a child process (this test binary, re-executed)
// keeps sealing values through a real keyring and committing them to a
// table, while this process rotates, re-encrypts and destroys. The
// bounds are shortened in both processes (maxStateAge, demotionSlack: the
// child reads them from childEnv, an environment variable only this test
// binary reads).

const childEnv = "FIELDCRYPT_KEYRING_TWO_PROCESS_CHILD"

type childConfig struct {
	DSN          string
	Keyring      Config
	MaxStateAge  time.Duration
	Slack        time.Duration
	StateRefresh time.Duration
}

// writeRow is one value the child committed.
type writeRow struct {
	ID      int64  `gorm:"column:id;primaryKey;autoIncrement"`
	Tenant  string `gorm:"column:tenant;size:32;not null"`
	CT      []byte `gorm:"column:ct;not null"`
	Version int64  `gorm:"column:version;not null"` // from the ciphertext header
	AtNanos int64  `gorm:"column:at_nanos;not null"`
}

func (writeRow) TableName() string { return "two_process_writes" }

func (r writeRow) binding() envelope.Binding {
	c := envelope.Critical
	if r.Tenant != "" {
		c = envelope.High
	}
	return envelope.Binding{Class: c, Tenant: r.Tenant, Table: "two_process_writes", Column: "ct", Row: fmt.Sprint(r.ID)}
}

// childSummary is what the child reports when it stops.
type childSummary struct {
	OK        map[string]int // by KEK: "critical/v2"
	Destroyed map[string]int // seals failing with envelope.ErrKeyDestroyed, by scope
	Other     []string       // any other failure
}

// TestTwoProcessChild is the writer of TestTwoProcessDestroy; it does
// nothing in a normal run.
func TestTwoProcessChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("helper process for TestTwoProcessDestroy")
	}
	var cfg childConfig
	require.NoError(t, json.Unmarshal([]byte(raw), &cfg))
	maxStateAge, demotionSlack = cfg.MaxStateAge, cfg.Slack
	cfg.Keyring.StateRefresh = cfg.StateRefresh
	db := openPool(t, cfg.DSN)
	kr, err := New(cfg.Keyring, NewGormStoreNoMigrate(db))
	require.NoError(t, err)
	defer kr.Close()
	env := envelope.New(kr)
	var stop atomic.Bool
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop.Store(true) }()
	sum := childSummary{OK: map[string]int{}, Destroyed: map[string]int{}}
	ctx := context.Background()
	for i := 0; !stop.Load(); i++ {
		tenant := ""
		if i%2 == 1 {
			tenant = "acme"
		}
		row := writeRow{Tenant: tenant, CT: []byte{}, AtNanos: time.Now().UnixNano()}
		require.NoError(t, db.Create(&row).Error) // the row id binds the value
		ct, err := env.Seal(ctx, row.binding(), fmt.Appendf(nil, "value %d", i))
		scope := row.binding().Scope().String()
		switch {
		case errors.Is(err, envelope.ErrKeyDestroyed):
			sum.Destroyed[scope]++
			require.NoError(t, db.Delete(&row).Error)
		case err != nil:
			sum.Other = append(sum.Other, err.Error())
			require.NoError(t, db.Delete(&row).Error)
		default:
			h, err := envelope.Inspect(ct)
			require.NoError(t, err)
			require.NoError(t, db.Model(&row).Updates(map[string]any{"ct": ct, "version": int64(h.KEKVersion), "at_nanos": time.Now().UnixNano()}).Error)
			sum.OK[fmt.Sprintf("%s/v%d", scope, h.KEKVersion)]++
		}
		time.Sleep(3 * time.Millisecond)
	}
	out, _ := json.Marshal(sum)
	fmt.Println("SUMMARY " + string(out))
}

// TestTwoProcessDestroy: destroy is refused, naming the time left, while
// the child may still hold the version as its primary; after the bound it
// succeeds and every value the child committed opens (none landed under
// the destroyed version). A forced destroy and a tenant shred reach the
// child within the bound, and its seals under a destroyed primary fail
// with envelope.ErrKeyDestroyed.
func TestTwoProcessDestroy(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	for _, d := range []testsvc.Dialect{testsvc.Postgres, testsvc.SQLite} {
		t.Run(string(d), func(t *testing.T) { testTwoProcessDestroy(t, d) })
	}
}

func testTwoProcessDestroy(t *testing.T, d testsvc.Dialect) {
	const (
		stateAge = 2 * time.Second
		slack    = time.Second
		refresh  = time.Second
	)
	oldAge, oldSlack := maxStateAge, demotionSlack
	maxStateAge, demotionSlack = stateAge, slack
	t.Cleanup(func() { maxStateAge, demotionSlack = oldAge, oldSlack })

	ctx := context.Background()
	_, dsn := testsvc.OpenDSN(t, d)
	db := openPool(t, dsn)
	dir := t.TempDir()
	uris := map[string]string{}
	for _, c := range []string{"critical", "high"} {
		p := filepath.Join(dir, c+".key")
		_, err := localkms.Create(p)
		require.NoError(t, err)
		uris[c] = localkms.URI(p)
	}
	cfg := Config{Name: "two-process", Classes: map[string]ClassConfig{
		"critical": {MasterKey: uris["critical"]},
		"high":     {MasterKey: uris["high"], TenantScoped: true},
	}}
	store, err := NewGormStore(ctx, db)
	require.NoError(t, err)
	require.NoError(t, db.AutoMigrate(&writeRow{}))
	var pinned atomic.Pointer[time.Time] // the parent's clock, pinned for a deterministic refusal
	parentClock := func() time.Time {
		if p := pinned.Load(); p != nil {
			return *p
		}
		return time.Now()
	}
	parent, err := New(cfg, store, withClock(parentClock))
	require.NoError(t, err)
	defer parent.Close()
	_, err = parent.Init(ctx)
	require.NoError(t, err)
	_, err = parent.EnsureScope(ctx, envelope.Scope{Class: envelope.High, Tenant: "acme"})
	require.NoError(t, err)
	env := envelope.New(parent)

	// The child.
	raw, _ := json.Marshal(childConfig{DSN: dsn, Keyring: cfg, MaxStateAge: stateAge, Slack: slack, StateRefresh: refresh})
	cmd := exec.Command(os.Args[0], "-test.run=^TestTwoProcessChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	output := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		output <- b.String()
	}()
	stopChild := func() childSummary {
		t.Helper()
		_ = stdin.Close()
		out := <-output
		require.NoError(t, cmd.Wait(), "child:\n%s\n%s", out, stderr.String())
		var sum childSummary
		for _, line := range strings.Split(out, "\n") {
			if s, ok := strings.CutPrefix(line, "SUMMARY "); ok {
				require.NoError(t, json.Unmarshal([]byte(s), &sum))
				return sum
			}
		}
		t.Fatalf("no summary from the child:\n%s\n%s", out, stderr.String())
		return sum
	}
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	rows := func(where string, args ...any) []writeRow {
		var out []writeRow
		require.NoError(t, db.Where("ct <> ?", []byte{}).Where(where, args...).Order("id").Find(&out).Error)
		return out
	}
	waitRows := func(n int, where string, args ...any) {
		t.Helper()
		require.Eventually(t, func() bool { return len(rows(where, args...)) >= n }, 30*time.Second, 20*time.Millisecond)
	}
	waitRows(20, "tenant = ''")

	// 1. Rotate (the search key too); destroying v1 is refused while the
	// child may hold it as its primary.
	rotateWithSearch(t, parent, critical, 1)
	v1 := ref(envelope.Critical, "", 1)
	var demoted time.Time
	list, err := parent.List(ctx)
	require.NoError(t, err)
	for _, i := range list {
		if i.Ref == v1 {
			demoted = i.DemotedAt
		}
	}
	require.False(t, demoted.IsZero())
	at := demoted.Add(time.Millisecond)
	pinned.Store(&at)
	_, err = parent.Destroy(ctx, v1)
	require.ErrorIs(t, err, ErrTooSoon)
	assert.ErrorContains(t, err, "every process stops using it by "+clock(demoted.Add(stateAge+slack)))
	assert.ErrorContains(t, err, "3s left")
	pinned.Store(nil)

	// 2. Re-encrypt what is under v1 and destroy, until the bound allows it.
	underV1 := func(ctx context.Context, _ envelope.KEKRef) error {
		if n := len(rows("tenant = '' AND version = 1")); n > 0 {
			return fmt.Errorf("%d values still under v1", n)
		}
		return nil
	}
	var destroyedAt time.Time
	for destroyedAt.IsZero() {
		require.True(t, time.Now().Before(demoted.Add(stateAge+slack+30*time.Second)), "gave up")
		for _, r := range rows("tenant = '' AND version = 1") {
			ct, err := env.Rewrap(ctx, r.binding(), r.CT)
			require.NoError(t, err)
			require.NoError(t, db.Model(&writeRow{}).Where("id = ? AND ct = ?", r.ID, r.CT).Updates(map[string]any{"ct": ct, "version": 2}).Error)
		}
		_, err := parent.Destroy(ctx, v1, WithDestroyCheck(underV1))
		switch {
		case err == nil:
			destroyedAt = time.Now()
		case errors.Is(err, ErrTooSoon):
			require.True(t, time.Now().Before(demoted.Add(stateAge+slack)), "refused after the bound: %v", err)
			time.Sleep(50 * time.Millisecond)
		default:
			require.ErrorContains(t, err, "still under v1") // committed since the last pass
		}
	}
	assert.False(t, destroyedAt.Before(demoted.Add(stateAge+slack)), "destroyed only once every process had stopped using v1")
	waitRows(len(rows("tenant = ''"))+20, "tenant = ''")
	for _, r := range rows("tenant = ''") {
		_, err := env.Open(ctx, r.binding(), r.CT)
		require.NoError(t, err, "row %d (v%d): no value landed under the destroyed version", r.ID, r.Version)
	}

	// 3. A forced destroy: the child stops sealing under v2 within the
	// bound (values it committed meanwhile are lost: that is what --force
	// accepts).
	rotateWithSearch(t, parent, critical, 1)
	_, err = parent.Destroy(ctx, ref(envelope.Critical, "", 2), Force())
	require.NoError(t, err)
	forcedAt := time.Now()

	// 4. Shred the tenant the child also writes for.
	_, err = parent.ShredTenant(ctx, "acme")
	require.NoError(t, err)
	shreddedAt := time.Now()
	waitRows(len(rows("tenant = '' AND version = 3"))+20, "tenant = '' AND version = 3")
	time.Sleep(stateAge) // well past what the child may still believe
	sum := stopChild()
	t.Logf("child: %+v", sum)

	assert.Empty(t, sum.Other, "the child's only failures are seals under destroyed keys")
	assert.NotZero(t, sum.OK["critical/v1"])
	assert.NotZero(t, sum.OK["critical/v3"], "the child moved to the new primary")
	assert.NotZero(t, sum.Destroyed["high/tenant=acme"], "seals for the shredded tenant fail with ErrKeyDestroyed")
	for _, r := range rows("tenant = '' AND version = 2") {
		assert.Less(t, r.AtNanos, forcedAt.Add(stateAge).UnixNano(), "row %d sealed under v2 long after its forced destruction", r.ID)
	}
	for _, r := range rows("tenant = 'acme'") {
		assert.Less(t, r.AtNanos, shreddedAt.Add(stateAge).UnixNano(), "row %d sealed for acme long after the shred", r.ID)
	}
	for _, r := range rows("tenant = '' AND version = 3") {
		_, err := env.Open(ctx, r.binding(), r.CT)
		require.NoError(t, err, "row %d", r.ID)
	}
}
