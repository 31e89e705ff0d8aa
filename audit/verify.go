package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"

	"github.com/fieldcrypt/fieldcrypt/fielderr"
)

// ErrTampered means a chained log, or its checkpoints, is not what the
// writer wrote: a record was changed, removed, inserted or reordered, a
// file was replaced, or the newest records were cut off (ErrTruncated).
// The error names the first bad record.
var ErrTampered = fielderr.New(fielderr.Tampered, "audit: the log has been tampered with")

// ErrTruncated means a checkpoint vouches for records the log no longer
// holds: the newest records were removed. It wraps ErrTampered.
var ErrTruncated = fmt.Errorf("%w: records a checkpoint vouches for are missing", ErrTampered)

// Problem names the first bad record Verify found.
type Problem struct {
	Log    string `json:"log,omitempty"`
	File   string `json:"file"`
	Line   int    `json:"line,omitempty"` // 1-based; 0 when the whole file is at fault
	Seq    uint64 `json:"seq,omitempty"`  // the sequence number expected there
	Reason string `json:"reason"`
}

func (p *Problem) String() string {
	s := p.File
	if p.Line > 0 {
		s += fmt.Sprintf(" line %d", p.Line)
	}
	if p.Seq > 0 {
		s += fmt.Sprintf(" (seq %d)", p.Seq)
	}
	return s + ": " + p.Reason
}

// TamperError is the error of a log that failed verification.
type TamperError struct {
	Problem   Problem
	truncated bool
}

func (e *TamperError) Error() string { return "audit: tampering detected: " + e.Problem.String() }

// Unwrap returns ErrTruncated or ErrTampered.
func (e *TamperError) Unwrap() error {
	if e.truncated {
		return ErrTruncated
	}
	return ErrTampered
}

// Entry is one event of a verified log, with where it was found.
type Entry struct {
	Log   string
	Seq   uint64
	MAC   []byte
	File  string
	Line  int
	Event Event
}

// VerifyOptions say which master keys may protect a log and which
// checkpoints to hold it to.
type VerifyOptions struct {
	// MasterKeys lists the master key URIs a log's key may be wrapped
	// under. A header naming any other is refused as tampering: whoever
	// writes the files could otherwise start a log under a key of their
	// own. At least one is required.
	MasterKeys []string
	// Opener opens them (kms.Open when nil).
	Opener kms.Opener
	// Checkpoints are the checkpoints to check (CheckpointStore.Checkpoints).
	// Without one, removing the newest records of a log goes unnoticed.
	Checkpoints []Checkpoint
	// AllowPartialStart accepts a log whose oldest files were deleted
	// (retention): the first file given need not start the log.
	AllowPartialStart bool
	// OnlyGivenLogs accepts that logs with checkpoints have no file among
	// those given (the checkpoint store serves several logs and only some
	// are verified). Without it such a log is reported: its files were
	// removed, or replaced by another log's.
	OnlyGivenLogs bool
	// Visit, when set, is called with every event record in order, after
	// its MAC and place in the chain are verified.
	Visit func(Entry) error
}

// LogResult is what Verify found in one log.
type LogResult struct {
	Log          string   `json:"log"`
	MasterKeyURI string   `json:"master_key_uri"`
	Files        []string `json:"files"`
	FirstSeq     uint64   `json:"first_seq"`
	LastSeq      uint64   `json:"last_seq"`
	Records      uint64   `json:"records"`
	// Checkpoint is the newest checkpoint verified against the log (nil:
	// none, so the newest records could have been removed unnoticed).
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Unvouched is how many records follow the newest checkpoint: their
	// removal could not be detected.
	Unvouched uint64 `json:"unvouched"`
	// TornTail: the newest file ends in an incomplete line (a crash while
	// writing; the writer drops it when it starts again). It is not part
	// of the chain.
	TornTail bool `json:"torn_tail,omitempty"`
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	OK      bool        `json:"ok"`
	Logs    []LogResult `json:"logs"`
	Records uint64      `json:"records"`
	Problem *Problem    `json:"problem,omitempty"`
	// Skipped are files without a single complete line (no record).
	Skipped []string `json:"skipped,omitempty"`
	// Seconds is how long Verify took; RecordsPerSecond how fast it
	// checked (MAC, link and parse of each record, KMS unwrap included).
	Seconds          float64 `json:"duration_s"`
	RecordsPerSecond float64 `json:"records_per_s"`
}

// WriteText writes the result for a person: per log its files, records
// and checkpoint, then OK or the first bad record.
func (r *VerifyResult) WriteText(w io.Writer) error {
	for _, l := range r.Logs {
		fmt.Fprintf(w, "log %s (key under %s): %d files, records %d to %d\n", l.Log, l.MasterKeyURI, len(l.Files), l.FirstSeq, l.LastSeq)
		if l.Checkpoint != nil {
			fmt.Fprintf(w, "  checkpoint: record %d at %s; %d newer records not vouched for yet\n", l.Checkpoint.Seq, l.Checkpoint.At.Format(time.RFC3339), l.Unvouched)
		} else {
			fmt.Fprintf(w, "  no checkpoint: removing the newest records would go unnoticed\n")
		}
		if l.TornTail {
			fmt.Fprintf(w, "  the newest file ends in an incomplete line (a crash while writing; dropped by the next writer)\n")
		}
	}
	if r.Problem != nil {
		_, err := fmt.Fprintf(w, "TAMPERED: %s\n", r.Problem.String())
		return err
	}
	_, err := fmt.Fprintf(w, "OK: %d records verified in %.2fs (%.0f records/s)\n", r.Records, r.Seconds, r.RecordsPerSecond)
	return err
}

// Verify checks chained log files: every record's MAC under its log's
// key, each record's link to the one before (across rotated files, in
// any order given), and each log against its checkpoints. Files of
// several logs may be given together.
//
// It returns a *TamperError (wrapping ErrTampered, or ErrTruncated)
// naming the first bad record when the files are not what the writer
// wrote; other errors (a file that cannot be read, a KMS that cannot be
// reached) are returned as they are. The result is filled either way.
func Verify(ctx context.Context, files []string, opts VerifyOptions) (*VerifyResult, error) {
	start := time.Now()
	res, err := verify(ctx, files, opts)
	res.Seconds = time.Since(start).Seconds()
	res.RecordsPerSecond = float64(res.Records) / max(res.Seconds, 1e-9)
	res.OK = err == nil
	return res, err
}

func verify(ctx context.Context, files []string, opts VerifyOptions) (*VerifyResult, error) {
	res := &VerifyResult{Logs: []LogResult{}}
	if len(files) == 0 {
		return res, errors.New("audit: no log files to verify")
	}
	if len(opts.MasterKeys) == 0 {
		return res, errors.New("audit: verify needs the master key URIs a log may be protected by")
	}
	if opts.Opener == nil {
		opts.Opener = kms.OpenerFunc(kms.Open)
	}
	logs, order, skipped, p, err := groupFiles(files)
	res.Skipped = skipped
	if err != nil || p != nil {
		return res.fail(p, err)
	}
	for _, id := range order {
		lr, p, err := verifyLog(ctx, logs[id], opts)
		res.Records += lr.Records
		res.Logs = append(res.Logs, lr)
		if err != nil || p != nil {
			return res.fail(p, err)
		}
	}
	if !opts.OnlyGivenLogs {
		for _, c := range opts.Checkpoints {
			if _, ok := logs[c.Log]; !ok {
				return res.fail(&Problem{Log: c.Log, File: "checkpoints", Seq: c.Seq,
					Reason: fmt.Sprintf("%s a checkpoint vouches for record %d of log %s, but no file of that log was given: its files were removed or replaced by another log's",
						truncatedReason, c.Seq, c.Log)}, nil)
			}
		}
	}
	return res, nil
}

func (r *VerifyResult) fail(p *Problem, err error) (*VerifyResult, error) {
	if p == nil {
		return r, err
	}
	r.Problem = p
	te := &TamperError{Problem: *p}
	te.truncated = strings.HasPrefix(p.Reason, truncatedReason)
	return r, te
}

const truncatedReason = "truncated:"

type logFile struct {
	path   string
	header *record
}

// groupFiles reads each file's header and groups the files by log, each
// group sorted by the header's sequence number.
func groupFiles(files []string) (map[string][]logFile, []string, []string, *Problem, error) {
	logs := map[string][]logFile{}
	var order, skipped []string
	for _, path := range files {
		if !hasNewline(path) {
			// No complete line, so no record: a file a crash left while it
			// was being started, or one emptied. Its records, if it had
			// any, are missing from the chain and reported there.
			skipped = append(skipped, path)
			continue
		}
		h, p, err := readHeader(path)
		if err != nil || p != nil {
			return nil, nil, nil, p, err
		}
		if _, ok := logs[h.Log]; !ok {
			order = append(order, h.Log)
		}
		logs[h.Log] = append(logs[h.Log], logFile{path: path, header: h})
	}
	for _, id := range order {
		fs := logs[id]
		sort.SliceStable(fs, func(i, j int) bool { return fs[i].header.Seq < fs[j].header.Seq })
		for i := 1; i < len(fs); i++ {
			if fs[i].header.Seq == fs[i-1].header.Seq {
				return nil, nil, nil, &Problem{Log: id, File: fs[i].path, Line: 1, Seq: fs[i].header.Seq,
					Reason: fmt.Sprintf("starts at the same record as %s (a file given twice, or a copy)", fs[i-1].path)}, nil
			}
		}
	}
	if len(order) == 0 {
		return nil, nil, nil, &Problem{File: files[0], Line: 1, Reason: "no file holds a complete record"}, nil
	}
	return logs, order, skipped, nil, nil
}

// readHeader parses the first line of a log file.
func readHeader(path string) (*record, *Problem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	sc := newLineScanner(f)
	if !sc.Scan() {
		if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("audit: read %s: %w", path, err)
		}
		return nil, &Problem{File: path, Line: 1, Reason: "empty, or its first line is not a chained-log header"}, nil
	}
	line := sc.Bytes()
	if !bytes.HasSuffix(line, []byte{'\n'}) {
		return nil, &Problem{File: path, Line: 1, Reason: "its header line is incomplete"}, nil
	}
	r, err := parseRecord(line[:len(line)-1])
	if err != nil || !r.header() {
		return nil, &Problem{File: path, Line: 1, Reason: "its first line is not a chained-log header"}, nil
	}
	return r, nil, nil
}

func newLineScanner(f *os.File) *bufio.Scanner {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine+1)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			return i + 1, data[:i+1], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	return sc
}

func verifyLog(ctx context.Context, files []logFile, opts VerifyOptions) (LogResult, *Problem, error) {
	first := files[0].header
	lr := LogResult{Log: first.Log, MasterKeyURI: first.Event.MasterKeyURI, FirstSeq: first.Seq}
	for _, f := range files {
		lr.Files = append(lr.Files, f.path)
		if f.header.Event.MasterKeyURI != first.Event.MasterKeyURI || !bytes.Equal(f.header.WrappedKey, first.WrappedKey) {
			return lr, &Problem{Log: lr.Log, File: f.path, Line: 1, Reason: "its header carries another key than the log's first file"}, nil
		}
	}
	if !slices.Contains(opts.MasterKeys, lr.MasterKeyURI) {
		return lr, &Problem{Log: lr.Log, File: files[0].path, Line: 1,
			Reason: fmt.Sprintf("the log's key is wrapped under %q, which is not a configured master key", lr.MasterKeyURI)}, nil
	}
	if first.Seq != 1 && !opts.AllowPartialStart {
		return lr, &Problem{Log: lr.Log, File: files[0].path, Line: 1, Seq: 1,
			Reason: fmt.Sprintf("the log starts at record %d: the files before it are missing (allow a partial start if retention removed them)", first.Seq)}, nil
	}
	mk, err := opts.Opener.OpenMasterKey(ctx, lr.MasterKeyURI)
	if err != nil {
		return lr, nil, err
	}
	keys, err := unwrapLogKey(ctx, mk, lr.Log, first.WrappedKey)
	if err != nil {
		if errors.Is(err, kms.ErrAuthentication) {
			return lr, &Problem{Log: lr.Log, File: files[0].path, Line: 1, Reason: "the wrapped log key does not unwrap for this log: the header was altered or belongs to another log"}, nil
		}
		return lr, nil, err
	}
	w := newWalker(lr.Log, keys, opts.Visit)
	var cps []*Checkpoint
	for i := range opts.Checkpoints {
		c := &opts.Checkpoints[i]
		if c.Log != lr.Log {
			continue
		}
		if !c.valid(keys) {
			return lr, &Problem{Log: lr.Log, File: "checkpoints", Seq: c.Seq, Reason: "a checkpoint of this log does not verify under the log's key"}, nil
		}
		cps = append(cps, c)
		w.cps[c.Seq] = append(w.cps[c.Seq], c)
	}
	if first.Seq != 1 {
		w.seq = first.Seq - 1 // partial start: the first header's link is unknown
	}
	for i, f := range files {
		st, p, err := w.file(f.path, i == len(files)-1)
		lr.Records = w.records
		if err != nil || p != nil {
			return lr, p, err
		}
		lr.TornTail = st.torn
	}
	lr.LastSeq = w.seq
	for _, c := range cps {
		if c.Seq > w.seq {
			return lr, &Problem{Log: lr.Log, File: files[len(files)-1].path, Seq: w.seq + 1,
				Reason: fmt.Sprintf("%s the log ends at record %d, but a checkpoint of %s vouches for record %d: the newest %d records were removed",
					truncatedReason, w.seq, c.At.UTC().Format(timeFormat), c.Seq, c.Seq-w.seq)}, nil
		}
		if c.Seq >= lr.FirstSeq && (lr.Checkpoint == nil || c.Seq > lr.Checkpoint.Seq) {
			lr.Checkpoint = c
		}
	}
	lr.Unvouched = lr.LastSeq
	if lr.Checkpoint != nil {
		lr.Unvouched = lr.LastSeq - lr.Checkpoint.Seq
	}
	return lr, nil, nil
}

// walker checks records in order: each one's sequence number, link and
// MAC. The writer uses it too, on the file it continues.
type walker struct {
	log     string
	h       hash.Hash
	buf     []byte
	seq     uint64 // the last record's; 0 before the first
	prev    []byte // the last record's MAC; nil while unknown
	records uint64
	cps     map[uint64][]*Checkpoint
	visit   func(Entry) error
}

func newWalker(log string, keys chainKeys, visit func(Entry) error) *walker {
	return &walker{log: log, h: newRecordHMAC(keys), cps: map[uint64][]*Checkpoint{}, visit: visit}
}

type fileState struct {
	torn     bool
	tornAt   int64 // offset of the torn line
	tornSize int64
}

// file walks one file. last says it is the log's newest file, whose last
// line may be torn by a crash.
func (w *walker) file(path string, last bool) (fileState, *Problem, error) {
	var st fileState
	f, err := os.Open(path)
	if err != nil {
		return st, nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	sc := newLineScanner(f)
	var offset int64
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		bad := func(reason string) (fileState, *Problem, error) {
			return st, &Problem{Log: w.log, File: path, Line: n, Seq: w.seq + 1, Reason: reason}, nil
		}
		if !bytes.HasSuffix(line, []byte{'\n'}) {
			if !last {
				return bad("incomplete last line in a file that is not the newest")
			}
			st.torn, st.tornAt, st.tornSize = true, offset, int64(len(line))
			break
		}
		offset += int64(len(line))
		r, err := parseRecord(line[:len(line)-1])
		if err != nil {
			return bad(err.Error())
		}
		switch {
		case r.Log != w.log:
			return bad(fmt.Sprintf("record of another log (%s)", r.Log))
		case n == 1 && !r.header():
			return bad("the file does not start with a header")
		case n > 1 && r.header():
			return bad("a header inside a file: records were inserted or files spliced")
		case w.seq != 0 && r.Seq != w.seq+1:
			if r.Seq <= w.seq {
				return bad(fmt.Sprintf("record %d appears again or out of order: records were reordered, duplicated or inserted", r.Seq))
			}
			return bad(fmt.Sprintf("record %d follows record %d: %d records are missing", r.Seq, w.seq, r.Seq-w.seq-1))
		case w.prev != nil && !hmac.Equal(r.Prev, w.prev):
			return bad("its link to the previous record does not match: a record before it was changed, removed or replaced")
		case w.prev == nil && w.seq == 0 && (r.Seq != 1 || !hmac.Equal(r.Prev, zeroMAC[:])):
			return bad("the first record of the log does not start the chain")
		}
		var mac []byte
		mac, w.buf = recordMAC(w.h, r, w.buf, nil)
		if !hmac.Equal(mac, r.MAC) {
			return bad("its MAC does not verify: the record was changed")
		}
		for _, c := range w.cps[r.Seq] {
			if !hmac.Equal(c.MAC, r.MAC) {
				return bad("it is not the record a checkpoint vouches for: the log was rewritten from here")
			}
		}
		w.seq, w.prev = r.Seq, r.MAC
		w.records++
		if w.visit != nil && !r.header() {
			if err := w.visit(Entry{Log: w.log, Seq: r.Seq, MAC: r.MAC, File: path, Line: n, Event: r.Event}); err != nil {
				return st, nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return st, &Problem{Log: w.log, File: path, Line: n + 1, Seq: w.seq + 1, Reason: "a line longer than any record"}, nil
		}
		return st, nil, fmt.Errorf("audit: read %s: %w", path, err)
	}
	if n == 0 {
		return st, &Problem{Log: w.log, File: path, Line: 1, Reason: "empty file"}, nil
	}
	return st, nil, nil
}

var zeroMAC [macSize]byte
