package cli

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress shows how far a long operation got: a progress bar with ETA on
// a terminal (stderr), JSON lines on stderr otherwise, or nothing.
type progress struct {
	mu    sync.Mutex
	bar   *progressbar.ProgressBar
	w     io.Writer // JSON lines; nil for none
	op    string
	total int64
	start time.Time
	last  time.Time
	done  int64
	every time.Duration
	errw  io.Writer
}

// progressMode says how a command reports progress.
type progressMode int

const (
	progressNone progressMode = iota
	progressBar
	progressJSON
)

// progressMode picks bar on a terminal in text mode, JSON lines otherwise
// (if jsonLines), none with --no-progress.
func (a *app) progressMode(jsonLines bool) progressMode {
	switch {
	case a.noProgress:
		return progressNone
	case a.io.StderrTerminal && !a.jsonOut():
		return progressBar
	case jsonLines:
		return progressJSON
	}
	return progressNone
}

// newProgress starts progress reporting of op; total < 0 means unknown.
func (a *app) newProgress(mode progressMode, op string, total int64, bytes bool) *progress {
	p := &progress{op: op, total: total, start: time.Now(), every: time.Second, errw: a.io.Stderr}
	switch mode {
	case progressBar:
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(a.io.Stderr),
			progressbar.OptionSetDescription(op),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100 * time.Millisecond),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
		}
		if bytes {
			opts = append(opts, progressbar.OptionShowBytes(true))
		} else {
			opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"))
		}
		p.bar = progressbar.NewOptions64(total, opts...)
	case progressJSON:
		p.w = a.io.Stderr
	}
	return p
}

// Describe changes the bar's description (what is being done or waited
// for); JSON lines carry it in their own fields.
func (p *progress) Describe(desc string) {
	if p == nil || p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Describe(desc)
}

// Set records the cumulative count done and, for JSON lines, extra fields.
func (p *progress) Set(done int64, extra map[string]any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = done
	if p.bar != nil {
		_ = p.bar.Set64(done)
		return
	}
	if p.w == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	p.line(now, extra, false)
}

func (p *progress) line(now time.Time, extra map[string]any, final bool) {
	elapsed := now.Sub(p.start).Seconds()
	m := map[string]any{"progress": p.op, "done": p.done, "elapsed_s": round2(elapsed)}
	if p.total >= 0 {
		m["total"] = p.total
		if p.done > 0 && p.total >= p.done && !final {
			m["eta_s"] = round2(elapsed / float64(p.done) * float64(p.total-p.done))
		}
	}
	if final {
		m["final"] = true
	}
	for k, v := range extra {
		m[k] = v
	}
	_ = json.NewEncoder(p.w).Encode(m)
}

// Finish ends the bar or writes the final JSON line.
func (p *progress) Finish(extra map[string]any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		if p.total < 0 || p.done >= p.total {
			_ = p.bar.Finish()
		} else {
			_ = p.bar.Exit()
		}
		_, _ = io.WriteString(p.errw, "\n")
		return
	}
	if p.w != nil {
		p.line(time.Now(), extra, true)
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
