package reencrypt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/fielderr"
	"github.com/fieldcrypt/fieldcrypt/internal/dbsql"
	"github.com/fieldcrypt/fieldcrypt/internal/telemetry"
)

// Sentinel errors. Errors returned by this package wrap one of them (or an
// envelope sentinel, or a database error).
var (
	// ErrInvalidOptions means a Column or Options field is invalid.
	ErrInvalidOptions = fielderr.New(fielderr.InvalidInput, "reencrypt: invalid column or options")
	// ErrJobMismatch means a job with this id exists for another table,
	// column or mode.
	ErrJobMismatch = fielderr.New(fielderr.InvalidInput, "reencrypt: job id belongs to another table, column or mode")
	// ErrRowsFailed means some rows could not be processed (they are listed
	// in Summary.Failures); every other row was.
	ErrRowsFailed = fielderr.New(fielderr.Unknown, "reencrypt: some rows failed")
	// ErrConflict means a row kept changing under the compare-and-swap
	// beyond Options.MaxRetries.
	ErrConflict = fielderr.New(fielderr.Conflict, "reencrypt: row changed concurrently too often")
	// ErrDuplicateIndex means a row's blind index is already taken under
	// a unique index: another row holds the same value. The row is left
	// as it was (listed in Summary.Failures); remove the duplicate and run
	// again.
	ErrDuplicateIndex = fielderr.New(fielderr.Conflict, "reencrypt: blind index violates a unique index (another row holds the same value)")
	// ErrMalformedValue means a value starts like a ciphertext but is not a
	// well-formed one.
	ErrMalformedValue = fielderr.New(fielderr.Malformed, "reencrypt: malformed ciphertext in column")
	// errLeaseLost means another process took over the chunk.
	errLeaseLost = errors.New("reencrypt: chunk lease lost")
)

// Mode selects what Run does to each value.
type Mode int

const (
	// Rewrap moves randomized values to the scope's primary KEK by
	// rewrapping the data key in the header; the plaintext is never
	// computed. Deterministic values are left alone (they follow the search
	// key, which a primary rotation does not change).
	Rewrap Mode = iota + 1
	// Full opens every value and seals it again with a fresh data key under
	// the primary KEK; deterministic values are moved to the newest search
	// key.
	Full
	// EncryptExisting encrypts plaintext values in place (a migration) and
	// leaves values that are already ciphertext alone.
	EncryptExisting
)

func (m Mode) String() string {
	switch m {
	case Rewrap:
		return "rewrap"
	case Full:
		return "full"
	case EncryptExisting:
		return "encrypt-existing"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses "rewrap", "full" or "encrypt-existing".
func ParseMode(s string) (Mode, error) {
	for m := Rewrap; m <= EncryptExisting; m++ {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown mode %q (want rewrap, full or encrypt-existing)", ErrInvalidOptions, s)
}

// MarshalText implements encoding.TextMarshaler: the mode's name.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Column names the column to process and how its values are bound.
type Column struct {
	Table string // table name (may be schema-qualified: schema.table)
	// PK names the primary key: one column ("id"), or several separated by
	// commas ("tenant_id, id") for a composite key. Values are bound to
	// their row as envelope.RowKeys renders the key, as gormcrypt does.
	PK     string
	Column string // the encrypted (or, for EncryptExisting, plaintext) column

	Class  envelope.Class
	Tenant string // fixed tenant of every value, "" for none
	// TenantColumn, when set, names a column holding each row's tenant
	// (overrides Tenant).
	TenantColumn string

	// RowBound binds values sealed by EncryptExisting (and re-sealed by
	// Full) to their row key. Values already row-bound stay row-bound.
	RowBound bool
	// Deterministic seals plaintext with SealDeterministic
	// (EncryptExisting only; Full keeps each value's suite).
	Deterministic bool
	// Text says the column stores the text form ("fc1:" + base64) and
	// takes string parameters; otherwise it is binary (bytea, BLOB).
	Text bool

	// RowKey, when set, renders a primary key as the Binding.Row string
	// instead of envelope.RowKeys: the key's value for one column, its
	// values as an []any for a composite key.
	RowKey func(pk any) string

	// BlindIndexes are the columns holding blind indexes of the value
	// (gormcrypt's `blindindex` tag). EncryptExisting writes them in the
	// same compare-and-swap as the ciphertext, and fills those still NULL
	// next to a value already encrypted (a migration run before indexes
	// were written); Full rewrites them with the value, under the newest
	// search key. Rewrap, which never sees a plaintext, leaves them
	// alone. Their values are byte-identical to what gormcrypt writes
	// (envelope.ComputeBlindIndexText).
	BlindIndexes []BlindIndex

	// Canonical, when set, rewrites a legacy plaintext (EncryptExisting)
	// into the form the application seals, before it is sealed and
	// indexed: the database's text of a number, a boolean or a time is
	// not always the application's. An error fails the row (named by its
	// key, never its value). gormcrypt.MigrationColumns sets it.
	Canonical func(plaintext []byte) ([]byte, error)
}

// BlindIndex is a blind-index column of a Column.
type BlindIndex struct {
	Column string // the column holding the index (hex text), e.g. "ssn_bidx"
	// Spec is the index's configuration, as gormcrypt's tag gives it
	// (blindindex=size:N;argon2): size and Argon2 cost enter the value.
	Spec envelope.BlindIndex
}

// Limits and defaults of Options.
const (
	MaxBatchSize    = 5000                   // rows per statement
	DefaultLeaseTTL = 30 * time.Second       // a chunk's lease without a heartbeat
	MinLeaseTTL     = 100 * time.Millisecond // heartbeats every LeaseTTL/3 need some room
)

// Options tune a Run. The zero value is usable: Rewrap, one worker.
type Options struct {
	Mode      Mode    // default Rewrap
	Workers   int     // concurrent chunk workers in this process (default 1)
	BatchSize int     // rows read and swapped per statement (default 500)
	ChunkSize int     // rows per leased chunk, fixed when the job is planned (default 10000)
	RateLimit float64 // rows per second for this process, 0 = unlimited
	// DryRun reads and counts what would change and writes nothing at all
	// (not even the job tables).
	DryRun bool
	// JobID names the job so that several processes share it and a rerun
	// resumes it. Empty: "<mode>:<table>.<column>", and a finished job of
	// that id is planned afresh. With an explicit id a finished job stays
	// finished: Run returns at once.
	JobID string
	// Owner names this process in leases (default hostname:pid:random).
	Owner string
	// LeaseTTL is how long a chunk lease lasts without a heartbeat
	// (default DefaultLeaseTTL, at least MinLeaseTTL). A worker renews its
	// lease every LeaseTTL/3 while it works, so a short lease is safe; a
	// killed worker's chunks are taken over once it expires.
	LeaseTTL   time.Duration
	MaxRetries int // compare-and-swap retries per row (default 5)
	// MaxFailures caps Summary.Failures (default 1000); Summary.Failed
	// counts them all.
	MaxFailures int
	// Progress, when set, is called (serially) about every ProgressEvery
	// and once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration // default 1s
	Logger        *slog.Logger  // default: discard
	// Audit, if set, records the run: reencrypt.started, .progress (every
	// minute), .finished, and decrypt.failed for rows whose values failed
	// authentication or are malformed (up to 100 a run).
	Audit audit.Sink

	// MeterProvider receives the run's metrics (fieldcrypt.reencrypt.rows,
	// .chunks, .chunk.duration, .lease.takeovers: docs/operations.md,
	// "Metrics and traces"); nil means the global provider
	// (otel.GetMeterProvider, which does nothing unless the application
	// installs one). The seals and opens are the envelope's, the KMS calls
	// the keyring's: give them the same provider with their own options.
	MeterProvider metric.MeterProvider
	// TracerProvider traces the run and each chunk (not each row); nil
	// means the global provider.
	TracerProvider trace.TracerProvider

	// transform replaces the crypto step (benchmark baseline only).
	transform func(v []byte) []byte
}

// Progress is a progress event.
type Progress struct {
	JobID       string
	Scanned     int64 // rows read by this process
	Done        int64 // rows done in the job (checkpointed before this run + Scanned)
	Total       int64 // rows in the table when the job was planned
	Changed     int64
	Conflicts   int64
	Failed      int64
	ChunksDone  int // chunks finished by this process
	ChunksTotal int
	Rate        float64       // rows per second of this process
	ETA         time.Duration // 0 when unknown
	Elapsed     time.Duration
	Final       bool
	// Waiting counts the chunks this process waits for, with nothing left
	// to claim: leased by other workers. Stalled counts those whose worker
	// stopped renewing its lease (killed, cut off); TakeoverIn is how long
	// until the first of them expires and is taken over.
	Waiting    int
	Stalled    int
	TakeoverIn time.Duration
}

// WaitingFor says what the process waits for, or "" when it is not
// waiting: "waiting for 2 chunks leased by a stopped worker, taken over
// in 24 s".
func (p Progress) WaitingFor() string {
	if p.Waiting == 0 {
		return ""
	}
	chunks := func(n int) string {
		if n == 1 {
			return "1 chunk"
		}
		return fmt.Sprintf("%d chunks", n)
	}
	if p.Stalled == 0 {
		return fmt.Sprintf("waiting for %s leased by other workers to finish", chunks(p.Waiting))
	}
	s := fmt.Sprintf("waiting for %s leased by a stopped worker, taken over in %d s", chunks(p.Stalled), int((p.TakeoverIn+time.Second-1)/time.Second))
	if p.Waiting > p.Stalled {
		s += fmt.Sprintf(" (and %s leased by other workers)", chunks(p.Waiting-p.Stalled))
	}
	return s
}

// RowFailure is a row that could not be processed. Err says why, naming the
// row, never the value.
type RowFailure struct {
	Row string
	Err error
}

func (f RowFailure) Error() string { return "row " + f.Row + ": " + f.Err.Error() }

// Unwrap returns the reason.
func (f RowFailure) Unwrap() []error { return []error{f.Err} }

// MarshalJSON renders {"row": ..., "error": ...}: a failure in a JSON
// report (an error value marshals to {} otherwise).
func (f RowFailure) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Row   string `json:"row"`
		Error string `json:"error"`
	}{f.Row, f.Err.Error()})
}

// UnmarshalJSON reads what MarshalJSON writes (the reason becomes a plain
// error).
func (f *RowFailure) UnmarshalJSON(b []byte) error {
	var v struct {
		Row   string `json:"row"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	f.Row, f.Err = v.Row, errors.New(v.Error)
	return nil
}

// Summary is what a Run did (this process only).
type Summary struct {
	JobID  string
	Mode   Mode
	DryRun bool

	Scanned int64 // rows read
	// Changed counts values rewrapped (Rewrap), re-encrypted (Full) or
	// encrypted (EncryptExisting); in a dry run, values that would be.
	Changed int64
	// Current counts values already on the target key (or, for
	// EncryptExisting, already ciphertext; for Rewrap, deterministic
	// values).
	Current int64
	Nulls   int64 // NULL values, skipped
	// Indexed counts values already encrypted whose missing blind indexes
	// EncryptExisting wrote (Column.BlindIndexes); in a dry run, that
	// would be.
	Indexed int64
	// Plaintext counts plaintext values found and left alone (Rewrap,
	// Full). EncryptExisting counts the plaintext it encrypts in Changed.
	Plaintext int64
	Conflicts int64 // compare-and-swap misses that were re-read and retried
	Vanished  int64 // rows deleted between read and swap
	Failed    int64 // rows that could not be processed
	Failures  []RowFailure

	ChunksDone      int  // chunks this process finished
	ChunksTakenOver int  // chunks this process took over from an expired lease
	JobFinished     bool // every chunk of the job is done
	Duration        time.Duration
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

func (c Column) validate() error {
	for _, f := range []struct{ name, v string }{{"Table", c.Table}, {"Column", c.Column}} {
		if !identRE.MatchString(f.v) {
			return fmt.Errorf("%w: %s %q is not a plain identifier", ErrInvalidOptions, f.name, f.v)
		}
	}
	for _, k := range pkColumns(c.PK) {
		if !identRE.MatchString(k) || strings.Contains(k, ".") {
			return fmt.Errorf("%w: PK %q is not a plain identifier (or a comma-separated list of them)", ErrInvalidOptions, c.PK)
		}
	}
	if c.TenantColumn != "" && !identRE.MatchString(c.TenantColumn) {
		return fmt.Errorf("%w: TenantColumn %q is not a plain identifier", ErrInvalidOptions, c.TenantColumn)
	}
	if !c.Class.Encrypted() {
		return fmt.Errorf("%w: class %s is not an encrypted class", ErrInvalidOptions, c.Class)
	}
	seen := map[string]bool{strings.ToLower(c.Column): true}
	for _, bi := range c.BlindIndexes {
		switch {
		case !identRE.MatchString(bi.Column) || strings.Contains(bi.Column, "."):
			return fmt.Errorf("%w: blind index column %q is not a plain identifier", ErrInvalidOptions, bi.Column)
		case seen[strings.ToLower(bi.Column)]:
			return fmt.Errorf("%w: blind index column %q is named twice (or is the value's column)", ErrInvalidOptions, bi.Column)
		case bi.Spec.Size != 0 && (bi.Spec.Size < 4 || bi.Spec.Size > 32):
			return fmt.Errorf("%w: blind index %s: size %d (want 4 to 32 bytes)", ErrInvalidOptions, bi.Column, bi.Spec.Size)
		case c.Deterministic:
			return fmt.Errorf("%w: blind index %s on a deterministic column (deterministic values are searchable already)", ErrInvalidOptions, bi.Column)
		}
		seen[strings.ToLower(bi.Column)] = true
	}
	return nil
}

// rowKey renders a row's key as Binding.Row: envelope.RowKeys (or
// Column.RowKey, given the key's value for one column, its values as an
// []any for several).
func (c Column) rowKey(t *dbsql.Table, pk []any) string {
	if c.RowKey != nil {
		if len(pk) == 1 {
			return c.RowKey(pk[0])
		}
		return c.RowKey(pk)
	}
	return t.RowKey(pk)
}

func (o *Options) defaults(col Column) error {
	if o.Mode == 0 {
		o.Mode = Rewrap
	}
	if o.Mode < Rewrap || o.Mode > EncryptExisting {
		return fmt.Errorf("%w: unknown mode %d", ErrInvalidOptions, int(o.Mode))
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.BatchSize > MaxBatchSize {
		return fmt.Errorf("%w: BatchSize %d above %d", ErrInvalidOptions, o.BatchSize, MaxBatchSize)
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 10000
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.LeaseTTL < MinLeaseTTL {
		return fmt.Errorf("%w: LeaseTTL %s below %s", ErrInvalidOptions, o.LeaseTTL, MinLeaseTTL)
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 5
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = 1000
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	if o.RateLimit < 0 {
		return fmt.Errorf("%w: negative RateLimit", ErrInvalidOptions)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.Owner = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if len(o.JobID) > 191 || len(o.Owner) > 191 {
		return fmt.Errorf("%w: JobID and Owner are limited to 191 bytes", ErrInvalidOptions)
	}
	return nil
}

// CheckOptions validates opts as Run would, without touching a database:
// an invalid option is reported before any work starts.
func CheckOptions(opts Options) error { return opts.defaults(Column{}) }

func defaultJobID(col Column, m Mode) string {
	return m.String() + ":" + col.Table + "." + col.Column
}

// PoolSize is how many idle connections a pool should keep for a Run with
// that many workers: each uses two connections (reading the next batch
// while the current one commits), plus heartbeats. database/sql keeps two
// idle connections by default and would close and reopen the rest after
// every statement. Run leaves the caller's pool alone; set
// db.SetMaxIdleConns(reencrypt.PoolSize(workers)) on a pool of your own.
func PoolSize(workers int) int { return 2*max(workers, 1) + 2 }

// Run processes every row of col according to opts.Mode and returns what
// this process did. Several processes (on any hosts) running Run with the
// same JobID share the work; a rerun after a crash or cancellation resumes
// from the checkpoints. Run returns when every chunk of the job is done (or
// ctx ends: then the leases it holds are released and the error is ctx's).
//
// A row that fails (say, it does not decrypt) does not stop the job: it is
// listed in Summary.Failures and Run returns an error wrapping
// ErrRowsFailed together with the full Summary.
func Run(ctx context.Context, db *gorm.DB, env *envelope.Envelope, col Column, opts Options) (Summary, error) {
	if err := col.validate(); err != nil {
		return Summary{}, err
	}
	if err := opts.defaults(col); err != nil {
		return Summary{}, err
	}
	if env == nil && opts.transform == nil {
		return Summary{}, fmt.Errorf("%w: nil envelope", ErrInvalidOptions)
	}
	explicitID := opts.JobID != ""
	rec := &recorder{sink: opts.Audit, col: col, opts: opts}
	rec.started(ctx, opts.JobID)
	if !explicitID {
		opts.JobID = defaultJobID(col, opts.Mode)
	}
	opts.Progress = rec.progress(ctx, opts.Progress)
	ctx, span := telemetry.Settings{TracerProvider: opts.TracerProvider}.Tracer().Start(ctx, "fieldcrypt.reencrypt.run",
		trace.WithAttributes(telemetry.KeyMode.String(opts.Mode.String()), telemetry.KeyClass.String(telemetry.ClassLabel(uint8(col.Class)))))
	defer span.End()
	r, err := newRunner(ctx, db, env, col, opts)
	if err != nil {
		rec.finished(ctx, Summary{JobID: opts.JobID, Mode: opts.Mode, DryRun: opts.DryRun}, err)
		return Summary{JobID: opts.JobID, Mode: opts.Mode, DryRun: opts.DryRun}, err
	}
	sum, err := r.run(ctx, explicitID)
	rec.finished(ctx, sum, err)
	if err != nil {
		span.SetStatus(codes.Error, "run failed")
	}
	return sum, err
}
