package keyring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/fieldcrypt/fieldcrypt/envelope"
)

// FileStore keeps KEK records in one JSON file, for deployments without a
// database (and for the CLI's offline use). Writes take an exclusive flock
// on PATH.lock, re-read the file, and replace it atomically (write to a
// temporary file, fsync, rename, fsync the directory), so concurrent
// processes serialize and readers always see a complete file.
type FileStore struct {
	path string
	mu   sync.Mutex // serializes writers inside this process
}

// NewFileStore returns a store backed by the JSON file at path. The file is
// created on the first write; its directory must exist.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

const fileFormat = "fieldcrypt-keyring/v1"

type fileDoc struct {
	Format string      `json:"format"`
	Scopes []fileScope `json:"scopes"`
}

type fileScope struct {
	Class    envelope.Class `json:"class"`
	Tenant   string         `json:"tenant,omitempty"`
	Search   []uint32       `json:"search"`
	KEKs     []fileKEK      `json:"keks"`
	Epoch    uint64         `json:"epoch,omitempty"`
	MAC      []byte         `json:"mac,omitempty"`
	ClassKey *fileClassKey  `json:"class_key,omitempty"`
}

type fileKEK struct {
	Version     uint32     `json:"version"`
	State       State      `json:"state"`
	WrappedBy   KeyWrap    `json:"wrapped_by,omitempty"`
	MasterKey   string     `json:"master_key"`
	Wrapped     []byte     `json:"wrapped,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	DemotedAt   *time.Time `json:"demoted_at,omitempty"`
	DestroyedAt *time.Time `json:"destroyed_at,omitempty"`
}

type fileClassKey struct {
	MasterKey string    `json:"master_key"`
	Wrapped   []byte    `json:"wrapped"`
	CreatedAt time.Time `json:"created_at"`
}

func optTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func timeOpt(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (f *FileStore) read() (map[envelope.Scope]*ScopeState, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[envelope.Scope]*ScopeState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrStore, f.path, err)
	}
	var doc fileDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: parse %s: %v", ErrStore, f.path, err)
	}
	if doc.Format != fileFormat {
		return nil, fmt.Errorf("%w: %s: unknown format %q (want %q)", ErrStore, f.path, doc.Format, fileFormat)
	}
	out := make(map[envelope.Scope]*ScopeState, len(doc.Scopes))
	for _, s := range doc.Scopes {
		// Invariants are the keyring's to verify (per scope, with an
		// audit event): a file that breaks them still loads.
		st := &ScopeState{Scope: envelope.Scope{Class: s.Class, Tenant: s.Tenant}, Search: s.Search, Epoch: s.Epoch, MAC: s.MAC}
		for _, k := range s.KEKs {
			st.Records = append(st.Records, Record{Version: k.Version, State: k.State, WrappedBy: k.WrappedBy, MasterKeyURI: k.MasterKey, Wrapped: k.Wrapped,
				CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt, DemotedAt: optTime(k.DemotedAt), DestroyedAt: optTime(k.DestroyedAt)})
		}
		if ck := s.ClassKey; ck != nil {
			st.ClassKey = &WrappedClassKey{MasterKeyURI: ck.MasterKey, Wrapped: ck.Wrapped, CreatedAt: ck.CreatedAt}
		}
		out[st.Scope] = st
	}
	return out, nil
}

func (f *FileStore) write(all map[envelope.Scope]*ScopeState) error {
	doc := fileDoc{Format: fileFormat}
	for _, st := range all {
		s := fileScope{Class: st.Scope.Class, Tenant: st.Scope.Tenant, Search: st.Search, Epoch: st.Epoch, MAC: st.MAC}
		for _, r := range st.Records {
			s.KEKs = append(s.KEKs, fileKEK{Version: r.Version, State: r.State, WrappedBy: r.WrappedBy, MasterKey: r.MasterKeyURI, Wrapped: r.Wrapped,
				CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), DemotedAt: timeOpt(r.DemotedAt), DestroyedAt: timeOpt(r.DestroyedAt)})
		}
		if ck := st.ClassKey; ck != nil {
			s.ClassKey = &fileClassKey{MasterKey: ck.MasterKeyURI, Wrapped: ck.Wrapped, CreatedAt: ck.CreatedAt.UTC()}
		}
		doc.Scopes = append(doc.Scopes, s)
	}
	sort.Slice(doc.Scopes, func(i, j int) bool {
		a, b := doc.Scopes[i], doc.Scopes[j]
		if a.Class != b.Class {
			return a.Class < b.Class
		}
		return a.Tenant < b.Tenant
	})
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: encode %s: %v", ErrStore, f.path, err)
	}
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%w: write %s: %v", ErrStore, f.path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.path)
	}
	if err != nil {
		return fmt.Errorf("%w: write %s: %v", ErrStore, f.path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// lock takes the in-process mutex and an exclusive flock on PATH.lock.
func (f *FileStore) lock(ctx context.Context) (unlock func(), err error) {
	f.mu.Lock()
	lf, err := os.OpenFile(f.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		f.mu.Unlock()
		return nil, fmt.Errorf("%w: lock %s: %v", ErrStore, f.path, err)
	}
	for {
		err = syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = lf.Close()
			f.mu.Unlock()
			return nil, fmt.Errorf("%w: lock %s: %v", ErrStore, f.path, err)
		}
		select {
		case <-ctx.Done():
			_ = lf.Close()
			f.mu.Unlock()
			return nil, fmt.Errorf("%w: lock %s: %v", ErrStore, f.path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
		_ = lf.Close()
		f.mu.Unlock()
	}, nil
}

// LoadScope implements Store.
func (f *FileStore) LoadScope(_ context.Context, scope envelope.Scope) (*ScopeState, error) {
	all, err := f.read()
	if err != nil {
		return nil, err
	}
	if st, ok := all[scope]; ok {
		return st, nil
	}
	return &ScopeState{Scope: scope}, nil
}

// ListScopes implements Store.
func (f *FileStore) ListScopes(_ context.Context) ([]*ScopeState, error) {
	all, err := f.read()
	if err != nil {
		return nil, err
	}
	return sortedStates(all), nil
}

// UpdateScope implements Store.
func (f *FileStore) UpdateScope(ctx context.Context, scope envelope.Scope, fn func(*ScopeState) error) error {
	unlock, err := f.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	all, err := f.read()
	if err != nil {
		return err
	}
	st, ok := all[scope]
	if !ok {
		st = &ScopeState{Scope: scope}
	}
	before := st.Clone()
	if err := fn(st); err != nil {
		return err
	}
	st.Scope = scope
	if err := checkUpdate(before, st); err != nil {
		return err
	}
	if sameState(before, st) {
		return nil
	}
	all[scope] = st
	return f.write(all)
}

// CreateScopes implements ScopeCreator: one locked read and one write of
// the file for all of states.
func (f *FileStore) CreateScopes(ctx context.Context, states []*ScopeState) ([]envelope.Scope, error) {
	for _, st := range states {
		if err := checkUpdate(&ScopeState{Scope: st.Scope}, st); err != nil {
			return nil, err
		}
	}
	unlock, err := f.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := f.read()
	if err != nil {
		return nil, err
	}
	var created []envelope.Scope
	for _, st := range states {
		if old, ok := all[st.Scope]; ok && !old.empty() {
			continue
		}
		all[st.Scope] = st.Clone()
		created = append(created, st.Scope)
	}
	if len(created) == 0 {
		return nil, nil
	}
	if err := f.write(all); err != nil {
		return nil, err
	}
	return created, nil
}

func sortedStates(all map[envelope.Scope]*ScopeState) []*ScopeState {
	out := make([]*ScopeState, 0, len(all))
	for _, st := range all {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Scope.Class != out[j].Scope.Class {
			return out[i].Scope.Class < out[j].Scope.Class
		}
		return out[i].Scope.Tenant < out[j].Scope.Tenant
	})
	return out
}

// checkUpdate verifies an update keeps the invariants, deletes nothing
// and moves states only along the lifecycle.
func checkUpdate(before, after *ScopeState) error {
	if err := checkTransition(before, after); err != nil {
		return err
	}
	return after.Check()
}
