package keyring

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/internal/dbsql"
)

// Table names used by GormStore.
const (
	KEKTable   = "fieldcrypt_keks"
	ScopeTable = "fieldcrypt_kek_scopes"
)

// kekRow is one KEK version in table fieldcrypt_keks.
//
// is_primary is TRUE for the active version and NULL otherwise; the unique
// index on (class, tenant, is_primary) lets the database itself refuse a
// second primary in a scope (NULLs never collide in a unique index on
// PostgreSQL, MySQL/MariaDB and SQLite).
type kekRow struct {
	ID           int64      `gorm:"column:id;primaryKey;autoIncrement"`
	Class        string     `gorm:"column:class;size:16;not null;uniqueIndex:fieldcrypt_keks_version,priority:1;uniqueIndex:fieldcrypt_keks_primary,priority:1"`
	Tenant       string     `gorm:"column:tenant;size:255;not null;uniqueIndex:fieldcrypt_keks_version,priority:2;uniqueIndex:fieldcrypt_keks_primary,priority:2"`
	Version      int64      `gorm:"column:version;not null;uniqueIndex:fieldcrypt_keks_version,priority:3"`
	IsPrimary    *bool      `gorm:"column:is_primary;uniqueIndex:fieldcrypt_keks_primary,priority:3"`
	State        string     `gorm:"column:state;size:16;not null"`
	WrappedBy    *string    `gorm:"column:wrapped_by;size:16"` // NULL: the master key
	MasterKeyURI string     `gorm:"column:master_key_uri;size:512;not null"`
	WrappedKey   []byte     `gorm:"column:wrapped_key"`
	CreatedAt    time.Time  `gorm:"column:created_at;not null;autoCreateTime:false"`
	UpdatedAt    time.Time  `gorm:"column:updated_at;not null;autoUpdateTime:false"`
	DemotedAt    *time.Time `gorm:"column:demoted_at"`
	DestroyedAt  *time.Time `gorm:"column:destroyed_at"`
}

func (kekRow) TableName() string { return KEKTable }

// scopeRow is one scope in table fieldcrypt_kek_scopes: the search-key
// designation, the integrity fields, the class key (class-wide scope
// only) and the row every UpdateScope locks first.
type scopeRow struct {
	Class             string     `gorm:"column:class;size:16;primaryKey;autoIncrement:false"`
	Tenant            string     `gorm:"column:tenant;size:255;primaryKey;autoIncrement:false"`
	Search            string     `gorm:"column:search_versions;size:1024;not null"` // "3,1": current first
	LockSeq           int64      `gorm:"column:lock_seq;not null"`
	UpdatedAt         time.Time  `gorm:"column:updated_at;not null;autoUpdateTime:false"`
	Epoch             *int64     `gorm:"column:epoch"` // NULL: written before sealing
	MAC               []byte     `gorm:"column:mac"`
	ClassKeyURI       *string    `gorm:"column:class_key_uri;size:512"`
	ClassKeyWrapped   []byte     `gorm:"column:class_key_wrapped"`
	ClassKeyCreatedAt *time.Time `gorm:"column:class_key_created_at"`
}

// apply copies the scope-level fields of r into st.
func (r scopeRow) apply(st *ScopeState) error {
	search, err := parseVersions(r.Search)
	if err != nil {
		return fmt.Errorf("%w: scope %s: bad search_versions %q", ErrStore, st.Scope, r.Search)
	}
	st.Search = search
	if r.Epoch != nil {
		if *r.Epoch < 0 {
			return fmt.Errorf("%w: scope %s: negative epoch %d", ErrStore, st.Scope, *r.Epoch)
		}
		st.Epoch = uint64(*r.Epoch)
	}
	st.MAC = r.MAC
	if r.ClassKeyURI != nil || len(r.ClassKeyWrapped) > 0 {
		ck := &WrappedClassKey{Wrapped: r.ClassKeyWrapped}
		if r.ClassKeyURI != nil {
			ck.MasterKeyURI = *r.ClassKeyURI
		}
		if r.ClassKeyCreatedAt != nil {
			ck.CreatedAt = *r.ClassKeyCreatedAt
		}
		st.ClassKey = ck
	}
	return nil
}

// scopeColumns are the scope-level columns of st, for an UPDATE.
func scopeColumns(st *ScopeState) map[string]any {
	cols := map[string]any{
		"search_versions":      formatVersions(st.Search),
		"updated_at":           time.Now().UTC(),
		"epoch":                gorm.Expr("NULL"),
		"mac":                  gorm.Expr("NULL"),
		"class_key_uri":        gorm.Expr("NULL"),
		"class_key_wrapped":    gorm.Expr("NULL"),
		"class_key_created_at": gorm.Expr("NULL"),
	}
	if st.sealed() {
		cols["epoch"] = int64(st.Epoch)
	}
	if len(st.MAC) > 0 {
		cols["mac"] = st.MAC
	}
	if ck := st.ClassKey; ck != nil {
		cols["class_key_uri"] = ck.MasterKeyURI
		cols["class_key_wrapped"] = ck.Wrapped
		cols["class_key_created_at"] = ck.CreatedAt.UTC()
	}
	return cols
}

func (scopeRow) TableName() string { return ScopeTable }

// GormStore keeps KEK records in the application's own database, in tables
// fieldcrypt_kek_scopes (one row per scope: search keys, lock) and
// fieldcrypt_keks (one row per KEK version). It works on SQLite,
// PostgreSQL and MySQL/MariaDB.
//
// UpdateScope runs in a transaction whose first statement updates the
// scope's row (a row lock on PostgreSQL and MySQL, the database write lock
// on SQLite), so concurrent updates of a scope serialize, from any number
// of processes; a unique index also makes a second primary impossible.
// Deadlocks, serialization failures and busy errors are retried. On
// SQLite, open the database with a busy timeout (for example
// "_pragma=busy_timeout(5000)") and preferably WAL mode.
//
// Schema (one keyring per database schema):
//
//	fieldcrypt_kek_scopes  class varchar(16), tenant varchar(255)   PRIMARY KEY (class, tenant)
//	                       search_versions varchar(1024)  "3,1": current search key first
//	                       lock_seq bigint                bumped by every update (the lock)
//	                       updated_at timestamp
//	                       epoch bigint NULL              +1 per keyring write (NULL: written before sealing)
//	                       mac blob NULL                  HMAC-SHA256 of the scope's state (ScopeState.MAC)
//	                       class_key_uri varchar(512) NULL, class_key_wrapped blob NULL,
//	                       class_key_created_at timestamp NULL
//	                                                      the class key (class-wide scope, tenant '', only)
//	fieldcrypt_keks        id bigint PRIMARY KEY
//	                       class, tenant, version bigint  UNIQUE fieldcrypt_keks_version
//	                       is_primary boolean NULL        TRUE for the active version, else NULL;
//	                                                      UNIQUE fieldcrypt_keks_primary (class, tenant, is_primary)
//	                       state varchar(16)              active | decrypt-only | retired | destroyed
//	                       wrapped_by varchar(16) NULL    NULL: the master key; 'class-key': the class key
//	                       master_key_uri varchar(512)    the master key wrapped_key is wrapped under ('' for the class key)
//	                       wrapped_key blob NULL          NULL once destroyed
//	                       created_at, updated_at timestamp, demoted_at, destroyed_at timestamp NULL
type GormStore struct {
	db      *gorm.DB
	retries atomic.Int64 // conflicts retried (tests log it)
	noLock  bool         // tests: prove the unique indexes alone keep the invariant
}

// NewGormStore returns a store on db and creates or updates its two tables
// (AutoMigrate). Use NewGormStoreNoMigrate where the schema is managed
// separately.
func NewGormStore(ctx context.Context, db *gorm.DB) (*GormStore, error) {
	s := NewGormStoreNoMigrate(db)
	if err := s.Migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// NewGormStoreNoMigrate returns a store on db without touching the schema.
func NewGormStoreNoMigrate(db *gorm.DB) *GormStore { return &GormStore{db: db} }

// Migrate creates or updates the store's tables and indexes. Concurrent
// migrations by several processes are retried.
func (s *GormStore) Migrate(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = s.db.WithContext(ctx).AutoMigrate(&scopeRow{}, &kekRow{}); err == nil {
			return nil
		}
		if sleepErr := backoff(ctx, attempt); sleepErr != nil {
			break
		}
	}
	return fmt.Errorf("%w: migrate %s, %s: %v", ErrStore, ScopeTable, KEKTable, err)
}

func scopeWhere(scope envelope.Scope) (string, []any) {
	return "class = ? AND tenant = ?", []any{scope.Class.String(), scope.Tenant}
}

// load reads the state of scope. With lock (inside UpdateScope) it reads
// under row locks. Without, it reads the scope row, the KEK rows, then the
// scope row again, and retries if a writer committed in between (the
// scope row's lock_seq and epoch change with every update): the state it
// returns is one a single transaction wrote, so its MAC verifies. Plain
// statements at READ COMMITTED would otherwise mix two states.
func (s *GormStore) load(tx *gorm.DB, scope envelope.Scope, lock bool) (*ScopeState, error) {
	where, args := scopeWhere(scope)
	q := func() *gorm.DB {
		d := tx.Where(where, args...)
		if lock {
			d = d.Clauses(clause.Locking{Strength: "UPDATE"})
		}
		return d
	}
	const attempts = 20
	for attempt := 0; ; attempt++ {
		// The scope row first: versions only grow, so the KEK rows read
		// after it include every version its search list names.
		var srows []scopeRow
		if err := q().Limit(1).Find(&srows).Error; err != nil {
			return nil, err
		}
		var rows []kekRow
		if err := q().Order("version").Find(&rows).Error; err != nil {
			return nil, err
		}
		if !lock {
			var again []scopeRow
			if err := q().Limit(1).Find(&again).Error; err != nil {
				return nil, err
			}
			if !sameScopeRows(srows, again) {
				if attempt+1 < attempts {
					continue
				}
				return nil, fmt.Errorf("scope %s changed during %d consecutive reads", scope, attempts)
			}
		}
		st := &ScopeState{Scope: scope}
		if len(srows) == 1 {
			if err := srows[0].apply(st); err != nil {
				return nil, err
			}
		}
		for _, r := range rows {
			st.Records = append(st.Records, r.record())
		}
		return st, nil
	}
}

// sameScopeRows reports whether two reads of scope rows saw the same
// writes.
func sameScopeRows(a, b []scopeRow) bool {
	if len(a) != len(b) {
		return false
	}
	seq := make(map[[2]string][2]int64, len(a))
	for _, r := range a {
		seq[[2]string{r.Class, r.Tenant}] = [2]int64{r.LockSeq, epochOf(r)}
	}
	for _, r := range b {
		if v, ok := seq[[2]string{r.Class, r.Tenant}]; !ok || v != [2]int64{r.LockSeq, epochOf(r)} {
			return false
		}
	}
	return true
}

func epochOf(r scopeRow) int64 {
	if r.Epoch == nil {
		return -1
	}
	return *r.Epoch
}

func optString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (r kekRow) record() Record {
	out := Record{
		Version:      uint32(r.Version),
		State:        State(r.State),
		MasterKeyURI: r.MasterKeyURI,
		WrappedBy:    KeyWrap(optString(r.WrappedBy)),
		Wrapped:      r.WrappedKey,
		CreatedAt:    r.CreatedAt,
		UpdatedAt:    r.UpdatedAt,
		DemotedAt:    optTime(r.DemotedAt),
		DestroyedAt:  optTime(r.DestroyedAt),
	}
	return out
}

func rowOf(scope envelope.Scope, r Record) kekRow {
	row := kekRow{
		Class:        scope.Class.String(),
		Tenant:       scope.Tenant,
		Version:      int64(r.Version),
		State:        string(r.State),
		MasterKeyURI: r.MasterKeyURI,
		WrappedKey:   r.Wrapped,
		CreatedAt:    r.CreatedAt.UTC(),
		UpdatedAt:    r.UpdatedAt.UTC(),
	}
	if r.State == StateActive {
		t := true
		row.IsPrimary = &t
	}
	if r.WrappedBy != WrapMasterKey {
		w := string(r.WrappedBy)
		row.WrappedBy = &w
	}
	row.DemotedAt = timeOpt(r.DemotedAt)
	row.DestroyedAt = timeOpt(r.DestroyedAt)
	return row
}

func parseVersions(s string) ([]uint32, error) {
	if s == "" {
		return nil, nil
	}
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(f, 10, 32)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("bad version %q", f)
		}
		out = append(out, uint32(v))
	}
	return out, nil
}

func formatVersions(vs []uint32) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strconv.FormatUint(uint64(v), 10)
	}
	return strings.Join(parts, ",")
}

// LoadScope implements Store.
func (s *GormStore) LoadScope(ctx context.Context, scope envelope.Scope) (*ScopeState, error) {
	st, err := s.load(s.db.WithContext(ctx), scope, false)
	if err != nil {
		return nil, fmt.Errorf("%w: load scope %s: %v", ErrStore, scope, err)
	}
	return st, nil
}

// ListScopes implements Store. Like LoadScope, it re-reads the scope rows
// after the KEK rows and retries if a writer committed in between.
func (s *GormStore) ListScopes(ctx context.Context) ([]*ScopeState, error) {
	db := s.db.WithContext(ctx)
	const attempts = 20
	var srows []scopeRow
	var rows []kekRow
	for attempt := 0; ; attempt++ {
		srows, rows = nil, nil
		if err := db.Find(&srows).Error; err != nil {
			return nil, fmt.Errorf("%w: list %s: %v", ErrStore, ScopeTable, err)
		}
		if err := db.Order("class, tenant, version").Find(&rows).Error; err != nil {
			return nil, fmt.Errorf("%w: list %s: %v", ErrStore, KEKTable, err)
		}
		var again []scopeRow
		if err := db.Find(&again).Error; err != nil {
			return nil, fmt.Errorf("%w: list %s: %v", ErrStore, ScopeTable, err)
		}
		if sameScopeRows(srows, again) {
			break
		}
		if attempt+1 == attempts {
			return nil, fmt.Errorf("%w: list %s: changed during %d consecutive reads", ErrStore, ScopeTable, attempts)
		}
	}
	all := map[envelope.Scope]*ScopeState{}
	get := func(class, tenant string) (*ScopeState, error) {
		c, err := envelope.ParseClass(class)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: unknown class %q", ErrStore, KEKTable, class)
		}
		sc := envelope.Scope{Class: c, Tenant: tenant}
		st := all[sc]
		if st == nil {
			st = &ScopeState{Scope: sc}
			all[sc] = st
		}
		return st, nil
	}
	for _, r := range srows {
		st, err := get(r.Class, r.Tenant)
		if err != nil {
			return nil, err
		}
		if err := r.apply(st); err != nil {
			return nil, err
		}
	}
	for _, r := range rows {
		st, err := get(r.Class, r.Tenant)
		if err != nil {
			return nil, err
		}
		st.Records = append(st.Records, r.record())
	}
	out := sortedStates(all)
	// Scope rows with nothing in them are left by a failed first creation; skip.
	return slices.DeleteFunc(out, func(st *ScopeState) bool { return st.empty() }), nil
}

// CreateScopes implements ScopeCreator: per call, one transaction that
// reads which scopes have a row already, then inserts the scope rows and
// KEK rows of the others in batches. A scope with a row (even an empty one
// a failed creation left) is left alone. A concurrent creator of the same
// scope makes the insert fail on the primary key: the transaction is
// retried and skips it.
func (s *GormStore) CreateScopes(ctx context.Context, states []*ScopeState) ([]envelope.Scope, error) {
	for _, st := range states {
		if err := checkUpdate(&ScopeState{Scope: st.Scope}, st); err != nil {
			return nil, err
		}
	}
	const maxAttempts = 30
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var created []envelope.Scope
		created, err = s.createOnce(ctx, states)
		if err == nil {
			return created, nil
		}
		if !retryable(err) {
			return nil, fmt.Errorf("%w: create %d scopes: %v", ErrStore, len(states), err)
		}
		s.retries.Add(1)
		if berr := backoff(ctx, attempt); berr != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: create %d scopes: gave up after conflicts: %v", ErrStore, len(states), err)
}

func (s *GormStore) createOnce(ctx context.Context, states []*ScopeState) ([]envelope.Scope, error) {
	var created []envelope.Scope
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		created = nil
		tenants := map[string][]string{}
		for _, st := range states {
			c := st.Scope.Class.String()
			tenants[c] = append(tenants[c], st.Scope.Tenant)
		}
		exists := map[envelope.Scope]bool{}
		for c, ts := range tenants {
			var rows []scopeRow
			if err := tx.Select("class", "tenant").Where("class = ? AND tenant IN ?", c, ts).Find(&rows).Error; err != nil {
				return err
			}
			for _, r := range rows {
				cl, err := envelope.ParseClass(r.Class)
				if err != nil {
					return fmt.Errorf("%w: %s: unknown class %q", ErrStore, ScopeTable, r.Class)
				}
				exists[envelope.Scope{Class: cl, Tenant: r.Tenant}] = true
			}
		}
		var srows []scopeRow
		var krows []kekRow
		now := time.Now().UTC()
		for _, st := range states {
			if exists[st.Scope] {
				continue
			}
			exists[st.Scope] = true // listed twice: once
			srows = append(srows, newScopeRow(st, now))
			for _, r := range st.Records {
				krows = append(krows, rowOf(st.Scope, r))
			}
			created = append(created, st.Scope)
		}
		if len(srows) == 0 {
			return nil
		}
		if err := tx.CreateInBatches(srows, 500).Error; err != nil {
			return err
		}
		return tx.CreateInBatches(krows, 500).Error
	})
	return created, err
}

// newScopeRow is the scope row of a new scope whose state is st.
func newScopeRow(st *ScopeState, now time.Time) scopeRow {
	r := scopeRow{Class: st.Scope.Class.String(), Tenant: st.Scope.Tenant, Search: formatVersions(st.Search), UpdatedAt: now, MAC: st.MAC}
	if st.sealed() {
		e := int64(st.Epoch)
		r.Epoch = &e
	}
	if ck := st.ClassKey; ck != nil {
		uri, at := ck.MasterKeyURI, ck.CreatedAt.UTC()
		r.ClassKeyURI, r.ClassKeyWrapped, r.ClassKeyCreatedAt = &uri, ck.Wrapped, &at
	}
	return r
}

// errRetry marks a conflict worth retrying.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

// UpdateScope implements Store.
func (s *GormStore) UpdateScope(ctx context.Context, scope envelope.Scope, fn func(*ScopeState) error) error {
	const maxAttempts = 30
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		err = s.updateOnce(ctx, scope, fn)
		if err == nil {
			return nil
		}
		var re errRetry
		if !errors.As(err, &re) {
			return err // fn's own error, or a permanent store error
		}
		s.retries.Add(1)
		if berr := backoff(ctx, attempt); berr != nil {
			break
		}
	}
	return fmt.Errorf("%w: update scope %s: gave up after conflicts: %v", ErrStore, scope, err)
}

func (s *GormStore) updateOnce(ctx context.Context, scope envelope.Scope, fn func(*ScopeState) error) error {
	db := s.db.WithContext(ctx)
	// Make sure the scope's lock row exists. Plain SELECT then INSERT (no
	// dialect-specific upsert): losing the insert race is a duplicate-key
	// error, which is fine.
	where, args := scopeWhere(scope)
	var n int64
	if err := db.Model(&scopeRow{}).Where(where, args...).Count(&n).Error; err != nil {
		if retryable(err) {
			return errRetry{err}
		}
		return fmt.Errorf("%w: read scope row %s: %v", ErrStore, scope, err)
	}
	if n == 0 {
		err := db.Create(&scopeRow{Class: scope.Class.String(), Tenant: scope.Tenant, UpdatedAt: time.Now().UTC()}).Error
		if err != nil && !retryable(err) {
			return fmt.Errorf("%w: create scope row %s: %v", ErrStore, scope, err)
		}
	}
	var fnErr error
	txErr := db.Transaction(func(tx *gorm.DB) error {
		// Lock first: on SQLite this takes the write lock before any read.
		if !s.noLock {
			res := tx.Model(&scopeRow{}).Where(where, args...).UpdateColumn("lock_seq", gorm.Expr("lock_seq + 1"))
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				return errRetry{fmt.Errorf("scope row %s missing", scope)}
			}
		}
		st, err := s.load(tx, scope, !s.noLock)
		if err != nil {
			return err
		}
		before := st.Clone()
		if err := fn(st); err != nil {
			fnErr = err
			return err
		}
		st.Scope = scope
		if err := checkUpdate(before, st); err != nil {
			fnErr = err
			return err
		}
		return s.save(tx, before, st)
	})
	if fnErr != nil {
		return fnErr
	}
	if txErr != nil {
		var re errRetry
		if errors.As(txErr, &re) || retryable(txErr) {
			return errRetry{txErr}
		}
		return fmt.Errorf("%w: update scope %s: %v", ErrStore, scope, txErr)
	}
	return nil
}

// save writes the difference between before and after: demotions first
// (so the unique primary index never sees two primaries), then other
// changes, then new versions.
func (s *GormStore) save(tx *gorm.DB, before, after *ScopeState) error {
	scope := after.Scope
	where, args := scopeWhere(scope)
	changed := func(i int) bool { return !sameRecord(before.Records[i], after.Records[i]) }
	update := func(r Record) error {
		row := rowOf(scope, r)
		cols := map[string]any{
			"state":          row.State,
			"master_key_uri": row.MasterKeyURI,
			"updated_at":     row.UpdatedAt,
			"is_primary":     gorm.Expr("NULL"),
			"wrapped_by":     gorm.Expr("NULL"),
			"wrapped_key":    gorm.Expr("NULL"),
			"demoted_at":     gorm.Expr("NULL"),
			"destroyed_at":   gorm.Expr("NULL"),
		}
		if row.IsPrimary != nil {
			cols["is_primary"] = true
		}
		if row.WrappedKey != nil {
			cols["wrapped_key"] = row.WrappedKey
		}
		if row.WrappedBy != nil {
			cols["wrapped_by"] = *row.WrappedBy
		}
		if row.DemotedAt != nil {
			cols["demoted_at"] = *row.DemotedAt
		}
		if row.DestroyedAt != nil {
			cols["destroyed_at"] = *row.DestroyedAt
		}
		vwhere, vargs := where+" AND version = ?", append(slices.Clone(args), row.Version)
		res := tx.Model(&kekRow{}).Where(vwhere, vargs...).UpdateColumns(cols)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			// MySQL counts changed rows, not matched ones: 0 may mean
			// "already so". Only a missing row is a conflict.
			var n int64
			if err := tx.Model(&kekRow{}).Where(vwhere, vargs...).Count(&n).Error; err != nil {
				return err
			}
			if n != 1 {
				return errRetry{fmt.Errorf("KEK %s/v%d: row missing", scope, r.Version)}
			}
		}
		return nil
	}
	for pass := 0; pass < 2; pass++ {
		for i := range before.Records {
			if !changed(i) {
				continue
			}
			demote := before.Records[i].State == StateActive && after.Records[i].State != StateActive
			if (pass == 0) != demote {
				continue
			}
			if err := update(after.Records[i]); err != nil {
				return err
			}
		}
	}
	for _, r := range after.Records[len(before.Records):] {
		row := rowOf(scope, r)
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
	}
	if !sameState(&ScopeState{Search: before.Search, Epoch: before.Epoch, MAC: before.MAC, ClassKey: before.ClassKey},
		&ScopeState{Search: after.Search, Epoch: after.Epoch, MAC: after.MAC, ClassKey: after.ClassKey}) || len(after.Records) != len(before.Records) {
		res := tx.Model(&scopeRow{}).Where(where, args...).UpdateColumns(scopeColumns(after))
		if res.Error != nil {
			return res.Error
		}
	}
	return nil
}

// retryable reports whether err is a transient conflict: a deadlock, a
// serialization failure, a lock wait timeout, SQLite busy (dbsql.Retryable),
// or a unique violation (another writer won a race the lock should have
// prevented).
func retryable(err error) bool { return dbsql.Retryable(err) || dbsql.UniqueViolation(err) }

func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(1<<min(attempt, 6)) * time.Millisecond
	d += time.Duration(rand.Int64N(int64(d) + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
