package gormcrypt

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"gorm.io/gorm"
)

// guardPool wraps a statement's connection pool for the one callback that
// executes it (gorm:create, gorm:query, gorm:row, gorm:raw, ...). Every SQL
// text and its arguments pass through it before they reach the database:
// the guard (sqlguard.go) refuses a plaintext bound for an encrypted
// column, and rows read for a destination that is not a model are
// decrypted on the way out (rows.go). It is installed after GORM has opened
// the statement's transaction and removed before it commits, so GORM's
// transaction handling never sees it.
type guardPool struct {
	gorm.ConnPool
	p       *Plugin
	d       dialect
	ctx     context.Context
	decrypt bool // wrap result rows: the destination is not a model
	// raw: the SQL text came from the caller (Raw, Exec), not from GORM.
	// Its result columns may come from tables gormcrypt does not know, so
	// a value without the ciphertext prefix in a column named like an
	// encrypted one is returned as stored rather than refused.
	raw bool
	// rowsOut: the statement hands its *sql.Rows to the caller (Row, Rows,
	// Scan): its rows are always served through the decrypting driver, so
	// even a ciphertext of a table gormcrypt does not know never reaches
	// the caller's scan (GORM runs no callback after it).
	rowsOut bool
	refused error
	tables  []*tableEntry // the registered tables of the rows it decrypted
	mu      sync.Mutex
}

const (
	poolKey   = "gormcrypt:pool"
	tablesKey = "gormcrypt:tables"
)

// errRefused marks the statement guard's refusals (and nothing else).
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// install wraps the statement's pool; decrypt says whether result rows
// are decrypted on the way out (non-model destinations), rowsOut that the
// rows go to the caller (Row, Rows, Scan).
func (p *Plugin) install(db *gorm.DB, decrypt, rowsOut bool) {
	stmt := db.Statement
	if stmt.ConnPool == nil || db.DryRun {
		return
	}
	if _, ok := stmt.ConnPool.(*guardPool); ok {
		return
	}
	if p.reg.empty() && !rowsOut {
		return
	}
	g := &guardPool{ConnPool: stmt.ConnPool, p: p, d: dialectOf(db.Dialector.Name()), decrypt: decrypt || rowsOut, rowsOut: rowsOut, raw: stmt.SQL.Len() > 0}
	stmt.ConnPool = g
	stmt.Settings.Store(poolKey, g)
}

// uninstall restores the statement's pool. When the guard refused the
// statement, its SQL and arguments are dropped so GORM's logger never
// shows them.
func (p *Plugin) uninstall(db *gorm.DB) {
	v, ok := db.Statement.Settings.LoadAndDelete(poolKey)
	if !ok {
		return
	}
	g := v.(*guardPool)
	if db.Statement.ConnPool == g {
		db.Statement.ConnPool = g.ConnPool
	}
	g.mu.Lock()
	refused, tables := g.refused, g.tables
	g.mu.Unlock()
	if len(tables) > 0 {
		db.Statement.Settings.Store(tablesKey, tables)
	}
	if refused != nil || isOurs(db.Error) {
		db.Statement.SQL.Reset()
		db.Statement.Vars = nil
	}
}

// check runs the guard on one statement.
func (g *guardPool) check(query string, args []any) (*analysis, error) {
	a := g.p.analyze(query, g.d)
	if why := a.refusal(args); why != "" {
		col, reason, _ := cutColon(why)
		err := &Error{Op: "exec", Column: col, Kind: ErrUnsupportedPath,
			Err: fmt.Errorf("the SQL statement would send %s to an encrypted column; write through the model (Create, Save, Updates) and search with struct conditions or gormcrypt.Eq", reason)}
		if cf := g.p.reg.field(a.tables, col); cf != nil {
			err.Model, err.Field, err.Table, err.Column = cf.Model, cf.Name, cf.Table, cf.Column
		}
		g.mu.Lock()
		g.refused = err
		g.mu.Unlock()
		return a, &refusal{err: err}
	}
	return a, nil
}

func cutColon(s string) (string, string, bool) {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == ':' && s[i+1] == ' ' {
			return s[:i], s[i+2:], true
		}
	}
	return "", s, false
}

func (g *guardPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if _, err := g.check(query, args); err != nil {
		return nil, err
	}
	return g.ConnPool.ExecContext(ctx, query, args...)
}

func (g *guardPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	a, err := g.check(query, args)
	if err != nil {
		return nil, err
	}
	rows, err := g.ConnPool.QueryContext(ctx, query, args...)
	if err != nil || !g.decrypt {
		return rows, err
	}
	tables := g.tablesFor(a)
	if len(tables) == 0 && !g.rowsOut {
		return rows, nil // nothing to decrypt; afterQuery checks the destination
	}
	return g.p.decryptRows(ctx, rows, tables, g.raw)
}

func (g *guardPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	a, err := g.check(query, args)
	if err != nil {
		return g.p.fake.QueryRowContext(ctx, fakeQuery, &handoff{err: err})
	}
	tables := g.tablesFor(a)
	if !g.decrypt || len(tables) == 0 && !g.rowsOut {
		return g.ConnPool.QueryRowContext(ctx, query, args...)
	}
	rows, err := g.ConnPool.QueryContext(ctx, query, args...)
	if err != nil {
		return g.p.fake.QueryRowContext(ctx, fakeQuery, &handoff{err: err})
	}
	return g.p.fake.QueryRowContext(ctx, fakeQuery, g.p.newHandoff(ctx, rows, tables, g.raw))
}

// GetDBConn lets db.DB() work inside the statement.
func (g *guardPool) GetDBConn() (*sql.DB, error) {
	switch c := g.ConnPool.(type) {
	case *sql.DB:
		return c, nil
	case gorm.GetDBConnector:
		return c.GetDBConn()
	}
	return (&gorm.DB{Config: &gorm.Config{ConnPool: g.ConnPool}}).DB()
}

// tablesFor returns the registered tables whose columns a result can
// hold: those the SQL names.
func (g *guardPool) tablesFor(a *analysis) []*tableEntry {
	var out []*tableEntry
	for _, t := range a.tables {
		if e := g.p.reg.get(t); e != nil && !containsEntry(out, e) {
			out = append(out, e)
		}
	}
	g.mu.Lock()
	g.tables = out
	g.mu.Unlock()
	return out
}

func containsEntry(s []*tableEntry, e *tableEntry) bool {
	for _, x := range s {
		if x == e {
			return true
		}
	}
	return false
}

// analyze returns the cached analysis of query.
func (p *Plugin) analyze(query string, d dialect) *analysis {
	gen := p.reg.gen.Load()
	key := analysisKey{query: query, d: d}
	if v, ok := p.analyses.Load(key); ok {
		if c := v.(*cachedAnalysis); c.gen == gen {
			return c.a
		}
	}
	a := analyzeSQL(query, d, &p.reg)
	if p.analysisCount.Add(1) > maxCachedAnalyses {
		p.analyses.Clear()
		p.analysisCount.Store(0)
	}
	p.analyses.Store(key, &cachedAnalysis{gen: gen, a: a})
	return a
}

type analysisKey struct {
	query string
	d     dialect
}

type cachedAnalysis struct {
	gen uint64
	a   *analysis
}

// maxCachedAnalyses bounds the analysis cache (statements built with
// inline values would otherwise grow it without end).
const maxCachedAnalyses = 4096

// isRefusal reports whether err is (or wraps) a guard refusal.
func isRefusal(err error) bool {
	var r *refusal
	return errors.As(err, &r)
}
