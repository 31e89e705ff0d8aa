package audit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// chainEnv is a directory with a local master key and a log path.
type chainEnv struct {
	t   testing.TB
	dir string
	mk  kms.MasterKey
	log string
	cps audit.FileCheckpoints
}

func newChainEnv(t testing.TB) *chainEnv {
	t.Helper()
	dir := t.TempDir()
	mk, err := localkms.Create(filepath.Join(dir, "audit.key"))
	require.NoError(t, err)
	return &chainEnv{t: t, dir: dir, mk: mk, log: filepath.Join(dir, "audit.jsonl"),
		cps: audit.FileCheckpoints{Path: filepath.Join(dir, "checkpoints.jsonl")}}
}

func (e *chainEnv) open(mod ...func(*audit.ChainOptions)) *audit.Chain {
	e.t.Helper()
	o := audit.ChainOptions{Path: e.log, MasterKey: e.mk, Checkpoints: e.cps, FlushInterval: time.Hour}
	for _, m := range mod {
		m(&o)
	}
	c, err := audit.OpenChain(context.Background(), o)
	require.NoError(e.t, err)
	return c
}

// write opens the log, records n access events and closes it.
func (e *chainEnv) write(n int, mod ...func(*audit.ChainOptions)) {
	e.t.Helper()
	c := e.open(mod...)
	ctx := audit.WithPurpose(audit.WithActor(context.Background(), audit.Person("support:jane")), "ticket 4711")
	for i := range n {
		c.Record(ctx, audit.Event{Type: audit.DecryptAccess, Class: "critical", Table: "patients", Column: "ssn",
			Row: fmt.Sprint(i + 1), KEKVersion: 2})
	}
	require.NoError(e.t, c.Close())
}

func (e *chainEnv) files() []string {
	e.t.Helper()
	fs, err := audit.Files(e.log)
	require.NoError(e.t, err)
	return fs
}

func (e *chainEnv) verify(mod ...func(*audit.VerifyOptions)) (*audit.VerifyResult, error) {
	e.t.Helper()
	cps, err := e.cps.Checkpoints(context.Background())
	require.NoError(e.t, err)
	o := audit.VerifyOptions{MasterKeys: []string{e.mk.URI()}, Checkpoints: cps}
	for _, m := range mod {
		m(&o)
	}
	return audit.Verify(context.Background(), e.files(), o)
}

func lines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.SplitAfter(string(b), "\n")[:strings.Count(string(b), "\n")]
}

func writeLines(t *testing.T, path string, ls []string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(ls, "")), 0o600))
}

func TestChainRoundTrip(t *testing.T) {
	e := newChainEnv(t)
	e.write(10)
	e.write(5) // a second process continues the log
	var got []audit.Entry
	res, err := e.verify(func(o *audit.VerifyOptions) {
		o.Visit = func(en audit.Entry) error { got = append(got, en); return nil }
	})
	require.NoError(t, err)
	require.Len(t, res.Logs, 1)
	lr := res.Logs[0]
	assert.Equal(t, uint64(1), lr.FirstSeq)
	assert.Equal(t, uint64(16), lr.LastSeq, "one header and 15 events")
	require.NotNil(t, lr.Checkpoint, "Close saves a checkpoint")
	assert.Equal(t, uint64(16), lr.Checkpoint.Seq)
	assert.Zero(t, lr.Unvouched)
	require.Len(t, got, 15)
	ev := got[14].Event
	assert.Equal(t, "support:jane", ev.Actor)
	assert.Equal(t, audit.KindPerson, ev.ActorKind)
	assert.Equal(t, "ticket 4711", ev.Purpose)
	assert.Equal(t, "5", ev.Row)
	assert.Equal(t, uint32(2), ev.KEKVersion)
	assert.Equal(t, uint64(16), got[14].Seq)
}

func TestChainRotation(t *testing.T) {
	e := newChainEnv(t)
	e.write(200, func(o *audit.ChainOptions) { o.MaxFileBytes = 4096 })
	files := e.files()
	require.Greater(t, len(files), 3, "small files rotate")
	// Verify takes the files in any order.
	shuffled := append([]string{files[len(files)-1]}, files[:len(files)-1]...)
	cps, err := e.cps.Checkpoints(context.Background())
	require.NoError(t, err)
	res, err := audit.Verify(context.Background(), shuffled, audit.VerifyOptions{MasterKeys: []string{e.mk.URI()}, Checkpoints: cps})
	require.NoError(t, err)
	assert.Equal(t, uint64(200+len(files)), res.Logs[0].LastSeq, "200 events and one header per file")

	// Retention removed the oldest file: refused unless allowed.
	_, err = audit.Verify(context.Background(), files[1:], audit.VerifyOptions{MasterKeys: []string{e.mk.URI()}, Checkpoints: cps})
	require.ErrorIs(t, err, audit.ErrTampered)
	_, err = audit.Verify(context.Background(), files[1:], audit.VerifyOptions{MasterKeys: []string{e.mk.URI()}, Checkpoints: cps, AllowPartialStart: true})
	require.NoError(t, err)
}

// TestChainTampering edits the log the way someone with write access to
// the files but no KMS access could, and expects each change to be named.
func TestChainTampering(t *testing.T) {
	otherLog := func(t *testing.T, e *chainEnv) string {
		// Another log under the same master key.
		o := &chainEnv{t: t, dir: e.dir, mk: e.mk, log: filepath.Join(e.dir, "other.jsonl"), cps: audit.FileCheckpoints{Path: filepath.Join(e.dir, "other-cps.jsonl")}}
		o.write(3)
		return o.log
	}
	tests := []struct {
		name     string
		rotate   bool
		tamper   func(t *testing.T, e *chainEnv)
		wantLine int // 0: do not check
		want     string
		trunc    bool
	}{
		{name: "edit a field", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			ls[4] = strings.Replace(ls[4], `"row":"4"`, `"row":"9"`, 1)
			writeLines(t, e.log, ls)
		}, wantLine: 5, want: "MAC does not verify"},
		{name: "edit the actor", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			ls[2] = strings.Replace(ls[2], `support:jane`, `support:john`, 1)
			writeLines(t, e.log, ls)
		}, wantLine: 3, want: "MAC does not verify"},
		{name: "add a field", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			ls[2] = strings.Replace(ls[2], `"class":`, `"tenant":"x","class":`, 1)
			writeLines(t, e.log, ls)
		}, wantLine: 3, want: "MAC does not verify"},
		{name: "duplicate a key", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			ls[2] = strings.Replace(ls[2], `"row":"2"`, `"row":"7","row":"2"`, 1)
			writeLines(t, e.log, ls)
		}, wantLine: 3, want: "appears twice"},
		{name: "delete a record", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			writeLines(t, e.log, append(ls[:3:3], ls[4:]...))
		}, wantLine: 4, want: "1 records are missing"},
		{name: "insert a record", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			writeLines(t, e.log, append(append(ls[:3:3], ls[2]), ls[3:]...))
		}, wantLine: 4, want: "appears again"},
		{name: "swap two records", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			ls[3], ls[4] = ls[4], ls[3]
			writeLines(t, e.log, ls)
		}, wantLine: 4, want: "follows record"},
		{name: "drop the last 3", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			writeLines(t, e.log, ls[:len(ls)-3])
		}, want: "the newest 3 records were removed", trunc: true},
		{name: "drop the last one and forge nothing else", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			writeLines(t, e.log, ls[:len(ls)-1])
		}, want: "the newest 1 records were removed", trunc: true},
		{name: "replace the file with another log's", tamper: func(t *testing.T, e *chainEnv) {
			b, err := os.ReadFile(otherLog(t, e))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(e.log, b, 0o600))
		}, want: "no file of that log was given", trunc: true},
		{name: "replace the file with one under the attacker's key", tamper: func(t *testing.T, e *chainEnv) {
			mk, err := localkms.Create(filepath.Join(e.dir, "attacker.key"))
			require.NoError(t, err)
			require.NoError(t, os.Remove(e.log))
			a := &chainEnv{t: t, dir: e.dir, mk: mk, log: e.log, cps: audit.FileCheckpoints{Path: filepath.Join(e.dir, "attacker-cps.jsonl")}}
			a.write(5)
		}, wantLine: 1, want: "not a configured master key"},
		{name: "move a header's key to another log", tamper: func(t *testing.T, e *chainEnv) {
			ls := lines(t, e.log)
			other := lines(t, otherLog(t, e))
			// Keep this log's id, take the other's wrapped key.
			wk := func(l string) string {
				i := strings.Index(l, `"wrapped_key":"`)
				j := strings.Index(l[i+15:], `"`)
				return l[i+15 : i+15+j]
			}
			ls[0] = strings.Replace(ls[0], wk(ls[0]), wk(other[0]), 1)
			writeLines(t, e.log, ls)
		}, wantLine: 1, want: "does not unwrap"},
		{name: "remove a rotated file in the middle", rotate: true, tamper: func(t *testing.T, e *chainEnv) {
			require.NoError(t, os.Remove(e.files()[1]))
		}, wantLine: 1, want: "records are missing"},
		{name: "replace a rotated file with a copy of another", rotate: true, tamper: func(t *testing.T, e *chainEnv) {
			fs := e.files()
			b, err := os.ReadFile(fs[0])
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(fs[1], b, 0o600))
		}, want: "starts at the same record"},
		{name: "edit a record in a rotated file", rotate: true, tamper: func(t *testing.T, e *chainEnv) {
			f := e.files()[1]
			ls := lines(t, f)
			ls[1] = strings.Replace(ls[1], `"class":"critical"`, `"class":"low"`, 1)
			writeLines(t, f, ls)
		}, wantLine: 2, want: "MAC does not verify"},
		{name: "empty the file", tamper: func(t *testing.T, e *chainEnv) {
			require.NoError(t, os.WriteFile(e.log, nil, 0o600))
		}, wantLine: 1, want: "no file holds a complete record"},
		{name: "empty a rotated file in the middle", rotate: true, tamper: func(t *testing.T, e *chainEnv) {
			require.NoError(t, os.WriteFile(e.files()[1], []byte("{"), 0o600))
		}, wantLine: 1, want: "records are missing"},
		{name: "forge a checkpoint", tamper: func(t *testing.T, e *chainEnv) {
			b, err := os.ReadFile(e.cps.Path)
			require.NoError(t, err)
			s := strings.Replace(string(b), `"seq":11`, `"seq":9`, 1)
			require.NoError(t, os.WriteFile(e.cps.Path, []byte(s), 0o600))
		}, want: "checkpoint of this log does not verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newChainEnv(t)
			if tc.rotate {
				e.write(60, func(o *audit.ChainOptions) { o.MaxFileBytes = 2048 })
				require.Greater(t, len(e.files()), 2)
			} else {
				e.write(10)
			}
			_, err := e.verify()
			require.NoError(t, err, "the log verifies before it is tampered with")
			tc.tamper(t, e)
			res, err := e.verify()
			require.ErrorIs(t, err, audit.ErrTampered)
			var te *audit.TamperError
			require.True(t, errors.As(err, &te))
			assert.Contains(t, te.Problem.Reason, tc.want)
			assert.Equal(t, tc.trunc, errors.Is(err, audit.ErrTruncated))
			if tc.wantLine > 0 {
				assert.Equal(t, tc.wantLine, te.Problem.Line, "the first bad record is named: %s", te.Problem.String())
			}
			require.NotNil(t, res.Problem)
		})
	}
}

func TestChainTruncationWithoutCheckpointIsInvisible(t *testing.T) {
	// What the file alone cannot show: documented in docs/audit.md.
	e := newChainEnv(t)
	e.write(10, func(o *audit.ChainOptions) { o.Checkpoints = nil })
	ls := lines(t, e.log)
	writeLines(t, e.log, ls[:len(ls)-3])
	res, err := e.verify()
	require.NoError(t, err)
	assert.Nil(t, res.Logs[0].Checkpoint)
	assert.Equal(t, res.Logs[0].LastSeq, res.Logs[0].Unvouched, "no record is vouched for")
}

func TestChainCheckpointsEveryN(t *testing.T) {
	e := newChainEnv(t)
	c := e.open(func(o *audit.ChainOptions) {
		o.CheckpointEvery, o.FlushInterval = 5, 10*time.Millisecond
	})
	for range 12 {
		c.Record(context.Background(), audit.Event{Type: audit.DecryptAccess, Table: "t", Column: "c", Row: "1"})
	}
	require.Eventually(t, func() bool {
		cps, err := e.cps.Checkpoints(context.Background())
		return err == nil && len(cps) > 0 && cps[len(cps)-1].Seq == 13
	}, 5*time.Second, 10*time.Millisecond, "a checkpoint follows the flush")
	require.NoError(t, c.Close())
}

func TestChainTornTail(t *testing.T) {
	e := newChainEnv(t)
	e.write(4)
	f, err := os.OpenFile(e.log, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"msg":"fieldcrypt.audit","level":"IN`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	res, err := e.verify()
	require.NoError(t, err, "a crash's torn line is not tampering")
	assert.True(t, res.Logs[0].TornTail)

	// The next writer drops it and says so.
	e.write(1)
	var types []audit.Type
	res, err = e.verify(func(o *audit.VerifyOptions) {
		o.Visit = func(en audit.Entry) error { types = append(types, en.Event.Type); return nil }
	})
	require.NoError(t, err)
	assert.False(t, res.Logs[0].TornTail)
	assert.Equal(t, audit.AuditRecovered, types[len(types)-2])
}

func TestChainRefusesToContinueATamperedLog(t *testing.T) {
	e := newChainEnv(t)
	e.write(5)
	ls := lines(t, e.log)
	ls[2] = strings.Replace(ls[2], `"row":"2"`, `"row":"3"`, 1)
	writeLines(t, e.log, ls)
	_, err := audit.OpenChain(context.Background(), audit.ChainOptions{Path: e.log, MasterKey: e.mk, Checkpoints: e.cps})
	require.ErrorIs(t, err, audit.ErrTampered)

	e2 := newChainEnv(t)
	e2.write(5)
	ls = lines(t, e2.log)
	writeLines(t, e2.log, ls[:len(ls)-2])
	_, err = audit.OpenChain(context.Background(), audit.ChainOptions{Path: e2.log, MasterKey: e2.mk, Checkpoints: e2.cps})
	require.ErrorIs(t, err, audit.ErrTruncated, "the checkpoint shows the cut")
}

func TestChainOneWriter(t *testing.T) {
	e := newChainEnv(t)
	c := e.open()
	_, err := audit.OpenChain(context.Background(), audit.ChainOptions{Path: e.log, MasterKey: e.mk})
	require.ErrorIs(t, err, audit.ErrLogInUse)
	require.NoError(t, c.Close())
	c = e.open()
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.Err(), audit.ErrClosed)
	require.ErrorIs(t, audit.SinkErr(audit.Multi(audit.Discard, c)), audit.ErrClosed, "Multi reports a failed sink")
}

func TestChainSyncEachRecord(t *testing.T) {
	e := newChainEnv(t)
	c := e.open(func(o *audit.ChainOptions) { o.Sync = audit.SyncEachRecord })
	c.Record(context.Background(), audit.Event{Type: audit.KEKRotated, Class: "high"})
	assert.Len(t, lines(t, e.log), 2, "written before Record returns")
	require.NoError(t, c.Close())
}

func TestChainConcurrentWriters(t *testing.T) {
	e := newChainEnv(t)
	c := e.open(func(o *audit.ChainOptions) { o.FlushInterval, o.MaxFileBytes = time.Millisecond, 8192 })
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 100 {
				c.Record(context.Background(), audit.Event{Type: audit.DecryptAccess, Table: "t", Column: "c", Row: fmt.Sprint(g, "-", i)})
			}
		}()
	}
	for range 4 {
		<-done
	}
	require.NoError(t, c.Close())
	var n int
	_, err := e.verify(func(o *audit.VerifyOptions) { o.Visit = func(audit.Entry) error { n++; return nil } })
	require.NoError(t, err)
	assert.Equal(t, 400, n)
}
