package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
)

// A log's files: their names, starting a log, and continuing one a
// previous writer left (verified first).

// rotatedName is the name a full file gets.
func rotatedName(path string, headerSeq uint64) string {
	return fmt.Sprintf("%s.%020d", path, headerSeq)
}

// Files returns the files of the log at path, oldest first: the rotated
// ones, then path itself when it exists. Verify takes them in any order.
func Files(path string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		suffix := strings.TrimPrefix(m, path+".")
		if len(suffix) == 20 && strings.Trim(suffix, "0123456789") == "" {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out, nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

// resume continues the log at opts.Path or starts one. It returns how
// many bytes of a torn last line it dropped.
func (c *Chain) resume(ctx context.Context) (int64, error) {
	files, err := Files(c.opts.Path)
	if err != nil {
		return 0, err
	}
	active := len(files) > 0 && files[len(files)-1] == c.opts.Path
	if active && !hasNewline(c.opts.Path) {
		// A crash while a file was being started can leave it with a torn
		// header and nothing else: it holds no record, so it goes.
		if err := os.Remove(c.opts.Path); err != nil {
			return 0, err
		}
		files, active = files[:len(files)-1], false
	}
	if len(files) == 0 {
		return 0, c.create(ctx)
	}
	newest := files[len(files)-1]
	h, p, err := readHeader(newest)
	if err != nil {
		return 0, err
	}
	if p != nil {
		return 0, &TamperError{Problem: *p}
	}
	if h.Event.MasterKeyURI != c.mkURI {
		return 0, fmt.Errorf("audit: the log at %s is protected by master key %s, not %s: configure that key, or start a new log at another path",
			c.opts.Path, h.Event.MasterKeyURI, c.mkURI)
	}
	keys, err := unwrapLogKey(ctx, c.opts.MasterKey, h.Log, h.WrappedKey)
	if err != nil {
		if errors.Is(err, kms.ErrAuthentication) {
			return 0, &TamperError{Problem: Problem{Log: h.Log, File: newest, Line: 1, Reason: "the wrapped log key does not unwrap for this log"}}
		}
		return 0, err
	}
	c.logID, c.keys, c.wrap = h.Log, keys, h.WrappedKey
	w := newWalker(h.Log, keys, nil)
	w.seq = h.Seq - 1
	if h.Seq == 1 {
		w.seq = 0
	}
	var cp *Checkpoint
	if c.opts.Checkpoints != nil {
		cps, err := c.opts.Checkpoints.Checkpoints(ctx)
		if err != nil {
			return 0, err
		}
		for i := range cps {
			if cps[i].Log == h.Log && cps[i].valid(keys) && (cp == nil || cps[i].Seq > cp.Seq) {
				cp = &cps[i]
			}
		}
		if cp != nil && cp.Seq >= h.Seq {
			w.cps[cp.Seq] = []*Checkpoint{cp}
		}
	}
	st, p, err := w.file(newest, true)
	if err != nil {
		return 0, err
	}
	if p != nil {
		return 0, &TamperError{Problem: *p}
	}
	if cp != nil && cp.Seq > w.seq {
		return 0, &TamperError{truncated: true, Problem: Problem{Log: h.Log, File: newest, Seq: w.seq + 1,
			Reason: fmt.Sprintf("%s the log ends at record %d, but a checkpoint vouches for record %d", truncatedReason, w.seq, cp.Seq)}}
	}
	c.seq, c.prev = w.seq, w.prev
	c.flushedSeq, c.flushedMAC = w.seq, w.prev
	if cp != nil {
		c.cpSeq, c.cpAt = cp.Seq, cp.At
	}
	if !active {
		// The newest file was rotated away before its successor existed.
		return 0, c.startFile(c.seq+1, c.prev)
	}
	if st.torn {
		if err := os.Truncate(newest, st.tornAt); err != nil {
			return 0, err
		}
	}
	f, err := os.OpenFile(newest, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	c.f, c.fileSeq, c.fileBytes = f, h.Seq, fi.Size()
	return st.tornSize, nil
}

// hasNewline reports whether the file at path holds a complete line.
func hasNewline(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true // let the reader report it
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if bytes.IndexByte(buf[:n], '\n') >= 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// create starts a new log.
func (c *Chain) create(ctx context.Context) error {
	id, keys, wrapped, err := newLogKey(ctx, c.opts.MasterKey)
	if err != nil {
		return err
	}
	c.logID, c.keys, c.wrap = id, keys, wrapped
	return c.startFile(1, zeroMAC[:])
}

// startFile writes a file holding only a header (at resume).
func (c *Chain) startFile(seq uint64, prev []byte) error {
	c.h = newRecordHMAC(c.keys)
	hdr := c.headerRecord(seq, prev)
	data := hdr.appendJSON(nil)
	f, err := createLogFile(c.opts.Path, data)
	if err != nil {
		return err
	}
	c.f, c.fileSeq, c.fileBytes = f, seq, int64(len(data))
	c.seq, c.prev = seq, hdr.MAC
	c.flushedSeq, c.flushedMAC = seq, hdr.MAC
	return nil
}

func createLogFile(path string, data []byte) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: create log file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: sync %s: %w", path, err)
	}
	return f, nil
}
