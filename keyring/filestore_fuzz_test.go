package keyring

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fuzzDir returns a fresh directory for one fuzz input, on tmpfs when the
// machine has one: the store fsyncs every write, which on a disk would cap
// the fuzzer at a few inputs a second.
func fuzzDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "fieldcrypt-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// FuzzFileStore feeds arbitrary bytes to the file store as its JSON file.
// Reading never panics; every error wraps ErrStore; a scope that fails
// ScopeState.Check is never written back (the keyring refuses it on use:
// TestTamperingRefused, "break an invariant"); and every valid scope it read, written
// by the store to a new file, reads back the same.
//
//	go test ./keyring -run '^$' -fuzz FuzzFileStore -fuzztime 30s
func FuzzFileStore(f *testing.F) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339Nano)
	for _, s := range []string{
		`{"format":"fieldcrypt-keyring/v1","scopes":[]}`,
		`{"format":"fieldcrypt-keyring/v1","scopes":[{"class":"critical","search":[1],"keks":[{"version":1,"state":"active","master_key":"local://k","wrapped":"AAEC","created_at":"` + ts + `","updated_at":"` + ts + `"}]}]}`,
		`{"format":"fieldcrypt-keyring/v1","scopes":[{"class":"high","tenant":"acme","search":[1],"keks":[{"version":1,"state":"decrypt-only","master_key":"local://k","wrapped":"AAEC","created_at":"` + ts + `","updated_at":"` + ts + `"},{"version":2,"state":"active","master_key":"local://k","wrapped":"AAEC","created_at":"` + ts + `","updated_at":"` + ts + `"}]}]}`,
		`{"format":"fieldcrypt-keyring/v1","scopes":[{"class":"low","search":[2],"keks":[{"version":1,"state":"destroyed","master_key":"local://k","created_at":"` + ts + `","updated_at":"` + ts + `","destroyed_at":"` + ts + `"},{"version":2,"state":"active","master_key":"local://k","wrapped":"AAEC","created_at":"` + ts + `","updated_at":"` + ts + `"}]}]}`,
		`{"format":"fieldcrypt-keyring/v2"}`, `{"format":"fieldcrypt-keyring/v1","scopes":[{"class":7}]}`, `{}`, `[]`, `null`, ``, `{"format":`,
	} {
		f.Add([]byte(s))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := fuzzDir(t)
		path := filepath.Join(dir, "keys.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		states, err := NewFileStore(path).ListScopes(ctx)
		if err != nil {
			if !errors.Is(err, ErrStore) {
				t.Fatalf("error without ErrStore: %v", err)
			}
			return
		}
		copyPath := filepath.Join(dir, "copy.json")
		out := NewFileStore(copyPath)
		var valid []*ScopeState
		for _, st := range states {
			// The store loads a scope that breaks the invariants (the
			// keyring refuses it on use, with an audit event, without
			// losing the other scopes); refusing to write it back is
			// the store's part, and the error says ErrStore.
			if err := st.Check(); err != nil {
				if !errors.Is(err, ErrStore) {
					t.Fatalf("Check failed without ErrStore: %v", err)
				}
				err := out.UpdateScope(ctx, st.Scope, func(s *ScopeState) error {
					*s = *st.Clone()
					return nil
				})
				if !errors.Is(err, ErrStore) {
					t.Fatalf("the store wrote a scope that fails Check (%v)", err)
				}
				continue
			}
			valid = append(valid, st)
			err := out.UpdateScope(ctx, st.Scope, func(s *ScopeState) error {
				*s = *st.Clone()
				return nil
			})
			if err != nil {
				t.Fatalf("the store cannot write what it read: %v", err)
			}
		}
		back, err := out.ListScopes(ctx)
		if err != nil {
			t.Fatalf("the store cannot read what it wrote: %v", err)
		}
		var nonEmpty []*ScopeState
		for _, st := range valid {
			if len(st.Records) > 0 || len(st.Search) > 0 {
				nonEmpty = append(nonEmpty, st)
			}
		}
		if len(back) != len(nonEmpty) {
			t.Fatalf("read %d scopes, wrote and read back %d", len(nonEmpty), len(back))
		}
		for i := range back {
			if nonEmpty[i].Scope != back[i].Scope || !sameState(nonEmpty[i], back[i]) {
				t.Fatalf("scope %s does not round-trip", nonEmpty[i].Scope)
			}
		}
	})
}
