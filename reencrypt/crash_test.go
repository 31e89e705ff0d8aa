package reencrypt

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// fixedKeys is a KeySource over fixed KEK bytes, so a child process can
// rebuild the parent's keys.
type fixedKeys struct {
	keks    map[uint32]*envelope.KEK
	primary uint32
}

func newFixedKeys(t testing.TB, material [][]byte, primary uint32) *fixedKeys {
	k := &fixedKeys{keks: map[uint32]*envelope.KEK{}, primary: primary}
	for i, m := range material {
		kek, err := envelope.NewKEK(envelope.KEKRef{Class: scope.Class, Version: uint32(i + 1)}, m)
		require.NoError(t, err)
		k.keks[uint32(i+1)] = kek
	}
	return k
}

func (k *fixedKeys) PrimaryKEK(_ context.Context, s envelope.Scope) (*envelope.KEK, error) {
	if s != scope {
		return nil, fmt.Errorf("%w: scope %s", envelope.ErrUnknownKey, s)
	}
	return k.keks[k.primary], nil
}

func (k *fixedKeys) KEK(_ context.Context, ref envelope.KEKRef) (*envelope.KEK, error) {
	if kek, ok := k.keks[ref.Version]; ok && ref.Scope() == scope {
		return kek, nil
	}
	return nil, fmt.Errorf("%w: %s", envelope.ErrUnknownKey, ref)
}

func (k *fixedKeys) SearchKEKs(context.Context, envelope.Scope) ([]*envelope.KEK, error) {
	return []*envelope.KEK{k.keks[1]}, nil
}

const childEnv = "FIELDCRYPT_REENCRYPT_CHILD"

type childConfig struct {
	DSN     string
	KeyFile string
	JobID   string
}

// TestChildWorker is the child process of TestCrashSafety; it does nothing
// in a normal test run.
func TestChildWorker(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("helper process for TestCrashSafety")
	}
	var cfg childConfig
	require.NoError(t, json.Unmarshal([]byte(raw), &cfg))
	var material [][]byte
	b, err := os.ReadFile(cfg.KeyFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &material))
	env := envelope.New(newFixedKeys(t, material, 2))
	db, err := gorm.Open(postgres.Open(cfg.DSN), &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)})
	require.NoError(t, err)
	sum, err := Run(context.Background(), db, env, testColumn("items", false), Options{
		JobID: cfg.JobID, Workers: 2, BatchSize: 20, ChunkSize: 250, LeaseTTL: 600 * time.Millisecond, RateLimit: 1500,
	})
	require.NoError(t, err)
	out, _ := json.Marshal(sum)
	fmt.Println("SUMMARY " + string(out))
}

func randN(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		panic(err)
	}
	return v.Int64()
}

// TestCrashSafety kills a reencrypt process with SIGKILL at random moments
// while the application keeps writing the same rows, then checks that no
// write was lost, no value was encrypted twice and every row ends on the
// new primary.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const (
		n       = 5000
		writers = 4
		rounds  = 6
	)
	ctx := context.Background()
	db, dsn := testsvc.OpenDSN(t, testsvc.Postgres)
	material := make([][]byte, 2)
	for i := range material {
		material[i] = make([]byte, envelope.KEKSize)
		_, _ = rand.Read(material[i])
	}
	keyFile := filepath.Join(t.TempDir(), "keks.json")
	kb, _ := json.Marshal(material)
	require.NoError(t, os.WriteFile(keyFile, kb, 0o600))
	oldEnv := envelope.New(newFixedKeys(t, material, 1))
	newEnv := envelope.New(newFixedKeys(t, material, 2))

	col := testColumn("items", false)
	createTable(t, db, col.Table, false)
	seed(t, db, oldEnv, col, n, func(int64) string { return "ct" })

	// The application: each writer owns the rows id % writers == w, so the
	// last value it committed to a row is exactly what the row must hold.
	var (
		mu   sync.Mutex
		last = map[int64]string{}
		stop = make(chan struct{})
		wg   sync.WaitGroup
		nW   [writers]int
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := randN(n/writers)*writers + int64(w) + 1
				if id > n {
					continue
				}
				pt := fmt.Sprintf("w%d-%d-%d", w, id, i)
				env := oldEnv
				if randN(2) == 0 {
					env = newEnv
				}
				ct, err := env.Seal(ctx, binding(col, id), []byte(pt))
				if err != nil {
					t.Error(err)
					return
				}
				if err := db.Exec("UPDATE items SET val = ? WHERE id = ?", ct, id).Error; err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				last[id] = pt
				mu.Unlock()
				nW[w]++
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	cfg, _ := json.Marshal(childConfig{DSN: dsn, KeyFile: keyFile, JobID: "crash"})
	child := func(kill time.Duration) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildWorker$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+string(cfg))
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		if kill > 0 {
			timer := time.AfterFunc(kill, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
			defer timer.Stop()
		}
		err := cmd.Wait()
		return out.String(), err
	}
	killed := 0
	for round := range rounds {
		at := time.Duration(200+randN(900)) * time.Millisecond
		out, err := child(at)
		if err != nil && strings.Contains(err.Error(), "killed") {
			killed++
			t.Logf("round %d: killed after %v", round, at)
			continue
		}
		require.NoError(t, err, out)
		t.Logf("round %d: child finished before the kill at %v", round, at)
	}
	assert.Positive(t, killed)

	// A clean run of the same job resumes it to the end.
	out, err := child(0)
	require.NoError(t, err, out)
	var resumed Summary
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "SUMMARY "); ok {
			require.NoError(t, json.Unmarshal([]byte(s), &resumed))
		}
	}
	assert.True(t, resumed.JobFinished)
	t.Logf("resume run: %+v", resumed)

	close(stop)
	wg.Wait()
	t.Logf("application writes: %v", nW)

	var chunkStats struct{ Takeovers, NotDone int }
	require.NoError(t, db.Raw("SELECT COALESCE(SUM(takeovers),0) AS takeovers, COALESCE(SUM(1-done),0) AS not_done FROM "+ChunksTable+" WHERE job_id = 'crash'").Scan(&chunkStats).Error)
	t.Logf("chunks taken over after kills: %d", chunkStats.Takeovers)
	assert.Zero(t, chunkStats.NotDone)

	// Writers also wrote old-key values behind the job: a final clean job
	// moves those.
	final, err := Run(ctx, db, newEnv, col, Options{JobID: "final", Workers: 2})
	require.NoError(t, err)
	t.Logf("final run: changed %d, current %d", final.Changed, final.Current)

	got := values(t, db, col)
	require.Len(t, got, n)
	for id := int64(1); id <= n; id++ {
		pt, h := openValue(t, newEnv, col, id, got[id])
		assert.Equal(t, uint32(2), h.KEKVersion, "row %d", id)
		assert.False(t, envelope.IsCiphertext([]byte(pt)), "row %d encrypted twice", id)
		want := plain(id)
		if v, ok := last[id]; ok {
			want = v
		}
		assert.Equal(t, want, pt, "row %d lost a write", id)
	}
}
