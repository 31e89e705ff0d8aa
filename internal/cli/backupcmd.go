package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/backup"
	"github.com/fieldcrypt/fieldcrypt/config"
)

type backupResult struct {
	Operation       string    `json:"operation"` // encrypt, decrypt, verify, inspect
	Class           string    `json:"class"`
	ExportID        string    `json:"export_id"`
	Name            string    `json:"name,omitempty"`
	MasterKeyURI    string    `json:"master_key_uri"`
	CreatedAt       time.Time `json:"created_at"`
	SegmentSize     int       `json:"segment_size"`
	Segments        int64     `json:"segments,omitempty"`
	PlaintextBytes  int64     `json:"plaintext_bytes,omitempty"`
	CiphertextBytes int64     `json:"ciphertext_bytes,omitempty"`
	DurationS       float64   `json:"duration_s,omitempty"`
	Authenticated   bool      `json:"authenticated"` // false for inspect: nothing was checked
}

func resultOf(op string, h *backup.Header, p backup.Progress, d time.Duration, authed bool) backupResult {
	return backupResult{
		Operation: op, Class: h.Class.String(), ExportID: h.ExportID.String(), Name: h.Name, MasterKeyURI: h.MasterKeyURI,
		CreatedAt: h.CreatedAt.UTC(), SegmentSize: h.SegmentSize, Segments: p.Segments, PlaintextBytes: p.PlaintextBytes,
		CiphertextBytes: p.CiphertextBytes, DurationS: round2(d.Seconds()), Authenticated: authed,
	}
}

type streamFlags struct {
	in, out string
	workers int
}

// fileArg takes an optional FILE argument, the same as --in FILE.
func (s *streamFlags) fileArg(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) > 1:
		return usageErrorf("%s takes at most one FILE (got %q)", cmd.CommandPath(), args)
	case len(args) == 1 && s.in != "" && s.in != args[0]:
		return usageErrorf("give the input as FILE or --in, not both")
	case len(args) == 1:
		s.in = args[0]
	}
	return nil
}

func (s *streamFlags) add(cmd *cobra.Command, out bool) {
	cmd.Flags().StringVarP(&s.in, "in", "i", "", "read from FILE instead of stdin")
	if out {
		cmd.Flags().StringVarP(&s.out, "out", "O", "", "write to FILE instead of stdout (decrypt: written atomically, only if everything authenticates)")
	}
	cmd.Flags().IntVar(&s.workers, "workers", 0, "segments processed in parallel (default: number of CPUs)")
}

// openIn returns the input and its size (-1 when unknown).
func (a *app) openIn(path string) (io.Reader, int64, func(), error) {
	if path == "" || path == "-" {
		if f, ok := a.io.Stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				return f, fi.Size(), func() {}, nil
			}
		}
		return a.io.Stdin, -1, func() {}, nil
	}
	f, err := os.Open(config.ResolvePath(a.io.Dir, path))
	if err != nil {
		return nil, 0, nil, err
	}
	size := int64(-1)
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	return f, size, func() { f.Close() }, nil
}

func (a *app) backupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Encrypted, streaming, authenticated backups (encrypt, decrypt, verify, inspect)",
		Long: `backup encrypts any stream (a database dump, a tarball) under a class's master
key: a fresh file key wrapped by the master key, then 1 MiB segments of
AES-256-GCM, each authenticated, in order, with an end marker. Memory use is
bounded whatever the size. Data goes stdin -> stdout unless --in/--out are
given; messages and the progress bar go to stderr.

Any failure exits non-zero: 3 for tampering or truncation, 4 when the master
key is unavailable or not trusted.`,
		Example: `  pg_dump mydb | fieldcrypt backup encrypt --class critical > mydb.dump.fcb
  fieldcrypt backup verify mydb.dump.fcb
  fieldcrypt backup decrypt --in mydb.dump.fcb | psql mydb
  fieldcrypt backup inspect mydb.dump.fcb`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.backupEncryptCmd(), a.backupDecryptCmd("decrypt"), a.backupDecryptCmd("verify"), a.backupInspectCmd())
	return cmd
}

func (a *app) backupEncryptCmd() *cobra.Command {
	var s streamFlags
	var class, name, metricsAddr string
	var segment int
	cmd := &cobra.Command{
		Use:   "encrypt [FILE]",
		Short: "Encrypt a stream under a class's master key",
		Example: `  pg_dump mydb | fieldcrypt backup encrypt --class critical > mydb.dump.fcb
  fieldcrypt backup encrypt --class high --name "orders 2026-11-23" --in orders.sql --out orders.sql.fcb`,
		Args: s.fileArg,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := a.config(true)
			if err != nil {
				return err
			}
			mp, err := a.serveMetrics(ctx, metricsAddr)
			if err != nil {
				return err
			}
			if class == "" {
				return usageErrorf("--class is required (the classification of the data in the stream)")
			}
			c, err := parseEncryptedClass(class)
			if err != nil {
				return err
			}
			cc, ok := cfg.Classes[c.String()]
			if !ok {
				return usageErrorf("class %s has no master key configured", c)
			}
			if s.out == "" && a.io.StderrTerminal && isTerminalWriter(a.io.Stdout) {
				return usageErrorf("refusing to write binary backup data to a terminal: redirect stdout or use --out FILE")
			}
			mk, err := cfg.Registry().OpenMasterKey(ctx, cc.MasterKey)
			if err != nil {
				return err
			}
			defer mk.Close()
			// A relative local:// key is recorded in the header by its
			// absolute path: a backup travels, its key must stay findable.
			in, size, closeIn, err := a.openIn(s.in)
			if err != nil {
				return err
			}
			defer closeIn()
			p := a.newProgress(a.progressMode(false), "encrypt", size, true)
			start := time.Now()
			opts := backup.EncryptOptions{Class: c, Name: name, SegmentSize: segment, Workers: s.workers, Audit: a.auditSink(), MeterProvider: mp,
				Progress: func(pr backup.Progress) { p.Set(pr.PlaintextBytes, nil) }}
			var res *backup.Result
			if toStdout := s.out == "" || s.out == "-"; toStdout {
				res, err = backup.Encrypt(ctx, a.io.Stdout, in, mk, opts) // records backup.encrypted
			} else {
				res, err = backup.EncryptFile(ctx, config.ResolvePath(a.io.Dir, s.out), in, mk, opts)
			}
			p.Finish(nil)
			if err != nil {
				return err
			}
			return a.emitResult(s.out == "" || s.out == "-", resultOf("encrypt", res.Header, res.Progress, time.Since(start), true))
		},
	}
	s.add(cmd, true)
	cmd.Flags().StringVar(&class, "class", "", "classification of the data (required); its master key protects the backup")
	cmd.Flags().StringVar(&name, "name", "", "label stored in the header and the KMS encryption context (not secret)")
	cmd.Flags().IntVar(&segment, "segment-size", 0, "plaintext bytes per segment (default 1 MiB)")
	addMetricsFlag(cmd, &metricsAddr)
	return cmd
}

// emitResult prints a backup result on stdout, or on stderr when stdout
// carries the data.
func (a *app) emitResult(dataOnStdout bool, r backupResult) error {
	w := a.io.Stdout
	if dataOnStdout {
		w = a.io.Stderr
	}
	saved := a.io.Stdout
	a.io.Stdout = w
	defer func() { a.io.Stdout = saved }()
	return a.emit(r, func(w io.Writer) {
		verb := map[string]string{"encrypt": "encrypted", "decrypt": "decrypted", "verify": "verified"}[r.Operation]
		fmt.Fprintf(w, "%s %s of class %s (export %s, master key %s) in %.2fs\n", verb, humanBytes(r.PlaintextBytes), r.Class, r.ExportID, r.MasterKeyURI, r.DurationS)
	})
}

func (a *app) backupDecryptCmd(op string) *cobra.Command {
	var s streamFlags
	var class, metricsAddr string
	var keys []string
	short := "Decrypt a backup, authenticating every segment"
	example := `  fieldcrypt backup decrypt --in mydb.dump.fcb | psql mydb
  fieldcrypt backup decrypt --in mydb.dump.fcb --out mydb.dump      # atomic: file appears only if all is authentic
  fieldcrypt backup decrypt --in old.fcb --key local://.fieldcrypt/master-critical-old.key`
	if op == "verify" {
		short = "Authenticate a whole backup without writing plaintext"
		example = `  fieldcrypt backup verify mydb.dump.fcb
  fieldcrypt backup verify --in mydb.dump.fcb -o json`
	}
	cmd := &cobra.Command{
		Use:   op + " [FILE]",
		Short: short,
		Long: short + `.

The backup's header names the master key that protects it. Only master keys
you trust are used: those of the configured classes, plus any --key URI. A
backup naming another key fails with exit 4 before any KMS call.` + map[bool]string{true: `

Decrypting to stdout streams plaintext as segments authenticate: if it fails
midway (exit 3) discard what was written. With --out FILE the file is
written atomically and only appears when everything authenticated.`}[op == "decrypt"],
		Example: example,
		Args:    s.fileArg,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := a.config(false)
			if err != nil {
				return err
			}
			mp, err := a.serveMetrics(ctx, metricsAddr)
			if err != nil {
				return err
			}
			opts := backup.DecryptOptions{Workers: s.workers, KeyURIs: slices.Clone(keys), Audit: a.auditSink(), MeterProvider: mp}
			for _, c := range cfg.EncryptedClasses() {
				opts.KeyURIs = append(opts.KeyURIs, cfg.Classes[c.String()].MasterKey)
			}
			for _, u := range slices.Clone(opts.KeyURIs) {
				if p := cfg.LocalKeyPath(u); p != "" && "local://"+p != u {
					opts.KeyURIs = append(opts.KeyURIs, "local://"+p) // the same file, named absolutely
				}
			}
			if len(opts.KeyURIs) == 0 {
				return usageErrorf("no trusted master key: configure the classes' master keys or pass --key URI")
			}
			if class != "" {
				if opts.Class, err = parseEncryptedClass(class); err != nil {
					return err
				}
			}
			if op == "decrypt" && s.out == "" && a.io.StderrTerminal && isTerminalWriter(a.io.Stdout) {
				return usageErrorf("refusing to write decrypted data to a terminal: redirect stdout or use --out FILE")
			}
			if op == "decrypt" && s.out != "" && s.out != "-" {
				if _, err := os.Lstat(config.ResolvePath(a.io.Dir, s.out)); err == nil {
					return fmt.Errorf("backup: %s exists: refusing to overwrite it", s.out)
				}
			}
			in, size, closeIn, err := a.openIn(s.in)
			if err != nil {
				return err
			}
			defer closeIn()
			p := a.newProgress(a.progressMode(false), op, size, true)
			opts.Progress = func(pr backup.Progress) { p.Set(pr.CiphertextBytes, nil) }
			start := time.Now()
			var res *backup.Result
			switch reg := cfg.Registry(); { // each records backup.decrypted or .verified
			case op == "verify":
				res, err = backup.Verify(ctx, in, reg, opts)
			case s.out != "" && s.out != "-":
				res, err = backup.DecryptFile(ctx, config.ResolvePath(a.io.Dir, s.out), in, reg, opts)
			default:
				res, err = backup.Decrypt(ctx, a.io.Stdout, in, reg, opts)
			}
			p.Finish(nil)
			if err != nil {
				return err
			}
			return a.emitResult(op == "decrypt" && (s.out == "" || s.out == "-"), resultOf(op, res.Header, res.Progress, time.Since(start), true))
		},
	}
	s.add(cmd, op == "decrypt")
	cmd.Flags().StringVar(&class, "class", "", "require the backup to be of this class")
	addMetricsFlag(cmd, &metricsAddr)
	cmd.Flags().StringArrayVar(&keys, "key", nil, "also trust this master key URI (repeatable), e.g. a class's previous master key")
	return cmd
}

func (a *app) backupInspectCmd() *cobra.Command {
	var s streamFlags
	cmd := &cobra.Command{
		Use:   "inspect [FILE]",
		Short: "Show a backup's header; needs no key and authenticates nothing",
		Example: `  fieldcrypt backup inspect mydb.dump.fcb
  fieldcrypt backup inspect -o json < mydb.dump.fcb`,
		Args: s.fileArg,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, _, closeIn, err := a.openIn(s.in)
			if err != nil {
				return err
			}
			defer closeIn()
			h, err := backup.Inspect(in)
			if err != nil {
				return err
			}
			r := resultOf("inspect", h, backup.Progress{}, 0, false)
			return a.emit(r, func(w io.Writer) {
				fmt.Fprintf(w, "fieldcrypt backup v%d (header NOT authenticated: run 'backup verify' to trust it)\n", h.Version)
				fmt.Fprintf(w, "  class          %s\n  export id      %s\n  name           %s\n  created        %s\n  master key     %s\n  segment size   %d\n",
					r.Class, r.ExportID, dash(r.Name), r.CreatedAt.Format(time.RFC3339), r.MasterKeyURI, r.SegmentSize)
			})
		},
	}
	s.add(cmd, false)
	return cmd
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
