package audit

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Checkpoint vouches, under the log's checkpoint key, that log Log held
// record Seq with MAC MAC at time At. The chained log writes one every
// ChainOptions.CheckpointEvery records or CheckpointInterval, and on
// Close, to a store apart from the log files: whoever can edit the log
// files cannot remove the newest records without Verify noticing, unless
// they can also roll the store back.
type Checkpoint struct {
	Log string    `json:"log"`
	Seq uint64    `json:"seq"`
	MAC []byte    `json:"mac"`
	At  time.Time `json:"at"` // whole seconds
	Sig []byte    `json:"sig"`
}

func (c *Checkpoint) sigInput() []byte {
	b := []byte(chainFormat + " checkpoint\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Log)))
	b = append(b, c.Log...)
	b = binary.BigEndian.AppendUint64(b, c.Seq)
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.MAC)))
	b = append(b, c.MAC...)
	return binary.BigEndian.AppendUint64(b, uint64(c.At.Unix()))
}

func (c *Checkpoint) sign(k chainKeys) {
	h := hmac.New(sha256.New, k.checkpoint)
	h.Write(c.sigInput())
	c.Sig = h.Sum(nil)
}

func (c *Checkpoint) valid(k chainKeys) bool {
	h := hmac.New(sha256.New, k.checkpoint)
	h.Write(c.sigInput())
	return hmac.Equal(h.Sum(nil), c.Sig)
}

// CheckpointStore keeps checkpoints. Save is called from the chained
// log's flusher, never on the caller's path.
type CheckpointStore interface {
	SaveCheckpoint(ctx context.Context, c Checkpoint) error
	// Checkpoints returns the stored checkpoints of every log.
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
}

// CheckpointTable is the table GormCheckpoints keeps the latest checkpoint
// of each log in.
const CheckpointTable = "fieldcrypt_audit_checkpoints"

type checkpointRow struct {
	LogID  string `gorm:"column:log_id;primaryKey;size:64"`
	Seq    uint64 `gorm:"column:seq;not null"`
	MAC    []byte `gorm:"column:mac;size:64;not null"`
	AtUnix int64  `gorm:"column:at_unix;not null"`
	Sig    []byte `gorm:"column:sig;size:64;not null"`
}

func (checkpointRow) TableName() string { return CheckpointTable }

// GormCheckpoints keeps the latest checkpoint of each log in a table of
// a database (SQLite, PostgreSQL, MariaDB). Create it with
// NewGormCheckpoints, which creates the table.
type GormCheckpoints struct{ db *gorm.DB }

// NewGormCheckpoints returns a store on db and creates its table.
func NewGormCheckpoints(ctx context.Context, db *gorm.DB) (*GormCheckpoints, error) {
	db = db.Session(&gorm.Session{NewDB: true})
	if err := db.WithContext(ctx).AutoMigrate(&checkpointRow{}); err != nil {
		return nil, fmt.Errorf("audit: create %s: %w", CheckpointTable, err)
	}
	return &GormCheckpoints{db: db}, nil
}

// NewGormCheckpointsNoMigrate returns a store on db whose table exists.
func NewGormCheckpointsNoMigrate(db *gorm.DB) *GormCheckpoints {
	return &GormCheckpoints{db: db.Session(&gorm.Session{NewDB: true})}
}

// SaveCheckpoint implements CheckpointStore: it replaces the log's
// checkpoint.
//
// It builds its statement with GORM's clause builders but executes it on
// the connection pool directly, without running GORM's callbacks: the
// chain's flusher calls it from its own goroutine, and an application may
// still be registering plugins (callbacks) on the same *gorm.DB, which GORM
// does not allow concurrently with statements.
func (s *GormCheckpoints) SaveCheckpoint(ctx context.Context, c Checkpoint) error {
	fail := func(err error) error { return fmt.Errorf("audit: save checkpoint of log %s: %w", c.Log, err) }
	stmt := &gorm.Statement{DB: s.db, Context: ctx, Clauses: map[string]clause.Clause{}, Table: CheckpointTable}
	stmt.AddClause(clause.Insert{Table: clause.Table{Name: CheckpointTable}})
	stmt.AddClause(clause.Values{
		Columns: []clause.Column{{Name: "log_id"}, {Name: "seq"}, {Name: "mac"}, {Name: "at_unix"}, {Name: "sig"}},
		Values:  [][]any{{c.Log, c.Seq, c.MAC, c.At.Unix(), c.Sig}},
	})
	stmt.AddClause(clause.OnConflict{
		Columns:   []clause.Column{{Name: "log_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"seq", "mac", "at_unix", "sig"}),
	})
	stmt.Build("INSERT", "VALUES", "ON CONFLICT")
	pool := s.db.Statement.ConnPool
	if pool == nil {
		pool = s.db.ConnPool
	}
	if _, err := pool.ExecContext(ctx, stmt.SQL.String(), stmt.Vars...); err != nil {
		return fail(err)
	}
	return nil
}

// Checkpoints implements CheckpointStore.
func (s *GormCheckpoints) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	var rows []checkpointRow
	if err := s.db.WithContext(ctx).Order("log_id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("audit: read %s: %w", CheckpointTable, err)
	}
	out := make([]Checkpoint, len(rows))
	for i, r := range rows {
		out[i] = Checkpoint{Log: r.LogID, Seq: r.Seq, MAC: r.MAC, At: time.Unix(r.AtUnix, 0).UTC(), Sig: r.Sig}
	}
	return out, nil
}

// FileCheckpoints appends checkpoints as JSON lines to a file (mode 0600):
// a second sink, on other storage than the log (another volume, a
// write-once bucket mount), for deployments without a database.
type FileCheckpoints struct{ Path string }

// SaveCheckpoint implements CheckpointStore.
func (s FileCheckpoints) SaveCheckpoint(_ context.Context, c Checkpoint) error {
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(s.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit: save checkpoint: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("audit: save checkpoint to %s: %w", s.Path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: save checkpoint to %s: %w", s.Path, err)
	}
	return f.Close()
}

// Checkpoints implements CheckpointStore. A line that is not a checkpoint
// fails with ErrTampered; a missing file holds none.
func (s FileCheckpoints) Checkpoints(context.Context) ([]Checkpoint, error) {
	f, err := os.Open(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	defer f.Close()
	var out []Checkpoint
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var c Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil || c.Log == "" || len(c.MAC) != macSize || len(c.Sig) != macSize {
			return nil, fmt.Errorf("%w: %s line %d is not a checkpoint", ErrTampered, s.Path, n)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit: read checkpoints from %s: %w", s.Path, err)
	}
	return out, nil
}
