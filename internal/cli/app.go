// Package cli implements the fieldcrypt command: key management, data
// re-encryption, encrypted backups, a quickstart and a benchmark, for
// operators working on a production database under live traffic.
//
// cmd/fieldcrypt/main.go only calls Main; everything else lives here so
// that tests run commands in-process (Run) and check their output and exit
// code.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/audit"
	"github.com/fieldcrypt/fieldcrypt/internal/hooks"
	"github.com/fieldcrypt/fieldcrypt/keyring"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"

	// Master key backends register their URI schemes.
	_ "github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
	_ "github.com/fieldcrypt/fieldcrypt/keyring/kms/gcpkms"
	_ "github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// IO is the environment a command runs in. Tests fill it with buffers.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Dir is the working directory relative paths resolve against; ""
	// means the process's.
	Dir string
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// StdinTerminal says a person can answer prompts on Stdin.
	StdinTerminal bool
	// StderrTerminal says progress bars may be drawn on Stderr.
	StderrTerminal bool
	// Now is the clock the keyring decides with (when a demoted key may be
	// destroyed); nil means time.Now. Tests move it forward.
	Now func() time.Time
}

// Main runs the command with the process's arguments and environment and
// returns the exit code. SIGINT and SIGTERM cancel the running operation,
// which stops cleanly and exits 130.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	dir, _ := os.Getwd()
	return Run(ctx, os.Args[1:], IO{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Dir: dir, Getenv: os.Getenv,
		StdinTerminal:  term.IsTerminal(int(os.Stdin.Fd())),
		StderrTerminal: term.IsTerminal(int(os.Stderr.Fd())),
	})
}

// Run runs the command line args and returns the exit code.
func Run(ctx context.Context, args []string, io IO) int {
	if io.Getenv == nil {
		io.Getenv = os.Getenv
	}
	if io.Dir == "" {
		io.Dir, _ = os.Getwd()
	}
	if io.Stdin == nil {
		io.Stdin = strings.NewReader("")
	}
	a := &app{io: io}
	defer a.close()
	root := a.rootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %w", context.Canceled, err)
	}
	if err != nil && !a.started && ExitCode(err) == ExitError {
		err = &usageError{err}
	}
	code := ExitCode(err)
	if err != nil {
		a.printError(err, code)
	}
	return code
}

// app is one invocation: global flags, and what commands open lazily.
type app struct {
	io IO

	// global flags
	configPath string
	database   string
	keyringID  string
	tenant     string
	auditLog   string
	actor      string
	masterKeys []string
	output     string
	noProgress bool
	setFlags   map[string]bool
	started    bool // command line parsed; errors before this are usage errors
	emitted    bool // a JSON result was written to stdout

	cfg      *Config
	dsn      DSN
	db       *gorm.DB
	kr       *keyring.Keyring
	sink     audit.Sink
	closers  []func()
	redactor []func(string) string
	// auditExtra adds counts to the keyring's own audit events of a type
	// (e.g. what the destroy check found).
	auditExtra map[audit.Type]map[string]int64
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

func (a *app) jsonOut() bool { return a.output == "json" }

func (a *app) redact(s string) string {
	for _, r := range a.redactor {
		s = r(s)
	}
	return s
}

func (a *app) printError(err error, code int) {
	msg := a.redact(err.Error())
	if a.jsonOut() && !a.emitted {
		// One JSON document on stdout: the result, or else the error.
		_ = json.NewEncoder(a.io.Stdout).Encode(map[string]any{"error": msg, "exit_code": code})
	}
	fmt.Fprintf(a.io.Stderr, "fieldcrypt: %s\n", msg)
	if code == ExitUsage && !strings.Contains(msg, "--help") {
		fmt.Fprintln(a.io.Stderr, "Run 'fieldcrypt --help' for usage.")
	}
}

// emit prints a result: v as JSON with --output json, else text(w).
func (a *app) emit(v any, text func(w io.Writer)) error {
	if a.jsonOut() {
		a.emitted = true
		enc := json.NewEncoder(a.io.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.io.Stdout)
	return nil
}

// note prints a human message on stderr (never in JSON mode's stdout).
func (a *app) note(format string, args ...any) {
	fmt.Fprintf(a.io.Stderr, format+"\n", args...)
}

// config loads and validates the configuration once.
func (a *app) config(needKeys bool) (*Config, error) {
	if a.cfg == nil {
		cfg, err := LoadConfig(a.io.Dir, a.io.Getenv, a.overrides())
		if err != nil {
			return nil, err
		}
		a.cfg = cfg
		if d, err := ParseDSN(cfg.Database, cfg.BaseDir); err == nil {
			a.dsn = d
			a.redactor = append(a.redactor, d.Redact)
		}
	}
	if err := a.cfg.Validate(needKeys); err != nil {
		return nil, err
	}
	return a.cfg, nil
}

// openDB opens the configured database once.
func (a *app) openDB(ctx context.Context) (*gorm.DB, error) {
	if a.db != nil {
		return a.db, nil
	}
	if _, err := a.config(false); err != nil {
		return nil, err
	}
	db, err := OpenDB(ctx, a.dsn)
	if err != nil {
		return nil, err
	}
	a.db = db
	a.closers = append(a.closers, func() { closeDB(db) })
	return db, nil
}

// now is the clock of this invocation (IO.Now, else time.Now).
func (a *app) now() time.Time {
	if a.io.Now != nil {
		return a.io.Now()
	}
	return time.Now()
}

// opener opens master keys, resolving relative local:// paths against the
// config file's directory (the working directory when there is none).
func (a *app) opener() kms.Opener {
	base := a.io.Dir
	if a.cfg != nil && a.cfg.BaseDir != "" {
		base = a.cfg.BaseDir
	}
	return kms.OpenerFunc(func(ctx context.Context, uri string) (kms.MasterKey, error) {
		if p, ok := strings.CutPrefix(uri, "local://"); ok && p != "" && !strings.HasPrefix(p, "/") {
			return kms.Open(ctx, "local://"+resolvePath(base, p))
		}
		return kms.Open(ctx, uri)
	})
}

// localKeyPath returns the file a local:// URI names, resolved, or "".
func (a *app) localKeyPath(uri string) string {
	p, ok := strings.CutPrefix(uri, "local://")
	if !ok || p == "" {
		return ""
	}
	base := a.io.Dir
	if a.cfg != nil && a.cfg.BaseDir != "" {
		base = a.cfg.BaseDir
	}
	return resolvePath(base, p)
}

// keyring opens the keyring on the configured database. migrate creates
// or updates the tables (init and keys upgrade only: other commands never
// change the schema of a production database).
func (a *app) keyring(ctx context.Context, migrate bool) (*keyring.Keyring, error) {
	if a.kr != nil {
		return a.kr, nil
	}
	cfg, err := a.config(true)
	if err != nil {
		return nil, err
	}
	kc, err := cfg.KeyringConfig()
	if err != nil {
		return nil, err
	}
	if migrate && a.dsn.Dialect == "sqlite" {
		// A new SQLite database holds wrapped keys: only its owner reads it.
		if f, err := os.OpenFile(a.dsn.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			f.Close()
		}
	}
	db, err := a.openDB(ctx)
	if err != nil {
		return nil, err
	}
	var store *keyring.GormStore
	if migrate {
		if store, err = keyring.NewGormStore(ctx, db); err != nil {
			return nil, fmt.Errorf("create keyring tables in %s: %w", a.dsn.Redacted, err)
		}
	} else {
		if !db.WithContext(ctx).Migrator().HasTable(keyring.KEKTable) {
			return nil, usageErrorf("database %s has no keyring tables (%s): run 'fieldcrypt init' first", a.dsn.Redacted, keyring.KEKTable)
		}
		if m := db.WithContext(ctx).Migrator(); !m.HasColumn(keyring.ScopeTable, "epoch") || !m.HasColumn(keyring.KEKTable, "wrapped_by") {
			return nil, usageErrorf("the keyring tables in %s lack columns this version needs (they predate sealed keyrings or class-key wrapping): run 'fieldcrypt keys upgrade' (it adds them, then seals the keyring)", a.dsn.Redacted)
		}
		store = keyring.NewGormStoreNoMigrate(db)
	}
	opts := []keyring.Option{keyring.WithOpener(a.opener()), keyring.WithAudit(a.keyringAudit())}
	if a.io.Now != nil { // tests: the keyring decides on the invocation's clock
		opts = append(opts, hooks.KeyringClock(a.io.Now).(keyring.Option))
	}
	kr, err := keyring.New(kc, store, opts...)
	if err != nil {
		return nil, err
	}
	a.kr = kr
	a.closers = append(a.closers, func() { _ = kr.Close() })
	return kr, nil
}

// auditSink returns the configured audit sink (audit_log / --audit-log /
// FIELDCRYPT_AUDIT_LOG): a JSON-lines file appended to (created 0600),
// "-" for stderr, nothing when unset.
func (a *app) auditSink() audit.Sink {
	if a.sink != nil {
		return a.sink
	}
	a.sink = audit.Discard
	cfg := a.cfg
	if cfg == nil {
		var err error
		if cfg, err = LoadConfig(a.io.Dir, a.io.Getenv, Overrides{ConfigPath: a.configPath, AuditLog: a.auditLog, Actor: a.actor, Set: a.setFlags}); err != nil {
			return a.sink
		}
	}
	var w io.Writer
	switch cfg.AuditLog {
	case "":
		return a.sink
	case "-":
		w = a.io.Stderr
	default:
		path := resolvePath(cfg.BaseDir, cfg.AuditLog)
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			a.note("warning: cannot open audit log %s: %v (audit events go to stderr)", path, err)
			w = a.io.Stderr
		} else {
			a.closers = append(a.closers, func() { _ = f.Close() })
			w = f
		}
	}
	actor := cfg.Actor
	inner := audit.NewSlogSink(slog.New(slog.NewJSONHandler(w, nil)))
	a.sink = audit.SinkFunc(func(ctx context.Context, e audit.Event) {
		if e.Actor == "" {
			e.Actor = actor
		}
		e.Error = a.redact(e.Error)
		inner.Record(ctx, e)
	})
	return a.sink
}

// keyringAudit is the sink the keyring records its lifecycle events to
// (KEK created, rotated, rewrapped, retired, destroyed, tenant shredded,
// master key unwraps): the CLI's sink, plus the counts of auditExtra.
func (a *app) keyringAudit() audit.Sink {
	return audit.SinkFunc(func(ctx context.Context, e audit.Event) {
		if extra := a.auditExtra[e.Type]; len(extra) > 0 {
			counts := make(map[string]int64, len(e.Counts)+len(extra))
			for k, v := range e.Counts {
				counts[k] = v
			}
			for k, v := range extra {
				counts[k] = v
			}
			e.Counts = counts
		}
		a.auditSink().Record(context.WithoutCancel(ctx), e)
	})
}

// record sends an audit event; err, if any, sets the outcome and message.
func (a *app) record(ctx context.Context, e audit.Event, err error) {
	if err != nil {
		e.Outcome = audit.Error
		e.Error = err.Error()
	}
	a.auditSink().Record(context.WithoutCancel(ctx), e)
}

func (a *app) actorName() string {
	if a.cfg != nil && a.cfg.Actor != "" {
		return a.cfg.Actor
	}
	return audit.DefaultActor()
}

// confirm asks the person at the terminal to type want. Without a
// terminal it refuses unless --yes was given.
func (a *app) confirm(ctx context.Context, yes bool, what, want string) error {
	if yes {
		return nil
	}
	if !a.io.StdinTerminal {
		return fmt.Errorf("%w: %s needs confirmation: pass --yes (no terminal to ask on)", errRefused, what)
	}
	fmt.Fprintf(a.io.Stderr, "%s\nType %q to confirm: ", what, want)
	answer := make(chan string, 1)
	go func() {
		var line []byte
		buf := make([]byte, 1)
		for {
			n, err := a.io.Stdin.Read(buf)
			if n == 1 && buf[0] != '\n' {
				line = append(line, buf[0])
				continue
			}
			if n == 1 || err != nil {
				break
			}
		}
		answer <- string(line)
	}()
	var line string
	select {
	case line = <-answer:
	case <-ctx.Done():
		fmt.Fprintln(a.io.Stderr)
		return ctx.Err()
	}
	if strings.TrimSpace(line) != want {
		return fmt.Errorf("%w: %s not confirmed", errRefused, what)
	}
	return nil
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "fieldcrypt",
		Short: "Application-level field encryption: keys, re-encryption, encrypted backups",
		Long: `fieldcrypt manages the keys of application-level field encryption and the
data they protect: a master key per classification in a KMS, versioned KEKs
per class (and optionally per tenant) stored wrapped in your database, and a
per-value data key inside each ciphertext.

Every command is safe on a production database under live traffic: reads are
batched, writes are per row and idempotent, destructive operations refuse
while data still depends on a key and ask for confirmation.

Configuration: flags > FIELDCRYPT_* environment > fieldcrypt.yaml (or
--config) > defaults. See docs/cli.md.

Exit codes:
` + exitCodeHelp(),
		Example: `  # Try it: a database, keys and sample data in a temp dir, in seconds
  fieldcrypt quickstart

  # Set up a project in the current directory (local key files, SQLite)
  fieldcrypt init

  # Rotate the critical KEK, re-encrypt (rewrap) the data, check nothing is left behind
  fieldcrypt keys rotate --class critical
  fieldcrypt reencrypt --column patients.ssn
  fieldcrypt keys census`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.started = true
			a.setFlags = map[string]bool{}
			cmd.Flags().Visit(func(f *pflag.Flag) { a.setFlags[f.Name] = true })
			if a.output == "" {
				a.output = a.io.Getenv(EnvOutput)
			}
			switch a.output {
			case "", "text":
				a.output = "text"
			case "json":
			default:
				return usageErrorf("--output %q: want text or json", a.output)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "config file (default ./fieldcrypt.yaml; env FIELDCRYPT_CONFIG)")
	pf.StringVar(&a.database, "database", "", "database URL: sqlite://PATH, postgres://..., mysql://... (env FIELDCRYPT_DATABASE; default sqlite://fieldcrypt.db)")
	pf.StringVar(&a.keyringID, "keyring", "", "keyring id bound into every wrapped KEK (env FIELDCRYPT_KEYRING; default \"default\")")
	pf.StringVar(&a.tenant, "tenant", "", "tenant scope (env FIELDCRYPT_TENANT)")
	pf.StringVar(&a.auditLog, "audit-log", "", "append audit events as JSON lines to FILE, '-' for stderr (env FIELDCRYPT_AUDIT_LOG; default off)")
	pf.StringVar(&a.actor, "actor", "", "who is acting, recorded in audit events (env FIELDCRYPT_ACTOR; default user@host)")
	pf.StringArrayVar(&a.masterKeys, "master-key", nil, "CLASS=URI master key of a class, repeatable (env FIELDCRYPT_MASTER_KEY_<CLASS>)")
	pf.StringVarP(&a.output, "output", "o", "", "output format: text or json (env FIELDCRYPT_OUTPUT)")
	pf.BoolVar(&a.noProgress, "no-progress", false, "no progress bar or progress lines")

	root.AddCommand(
		a.initCmd(),
		a.keysCmd(),
		a.reencryptCmd(false),
		a.reencryptCmd(true),
		a.backupCmd(),
		a.quickstartCmd(),
		a.benchCmd(),
		a.configCmd(),
		a.exitCodesCmd(),
	)
	a.registerCompletions(root)
	root.SetIn(a.io.Stdin)
	root.SetOut(a.io.Stdout)
	root.SetErr(a.io.Stderr)
	root.InitDefaultCompletionCmd() // after SetOut: it captures the writer
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = "  source <(fieldcrypt completion bash)\n  fieldcrypt completion zsh > \"${fpath[1]}/_fieldcrypt\"\n  fieldcrypt completion fish > ~/.config/fish/completions/fieldcrypt.fish"
			for _, sh := range c.Commands() {
				switch sh.Name() {
				case "bash":
					sh.Example = "  source <(fieldcrypt completion bash)\n  fieldcrypt completion bash > /etc/bash_completion.d/fieldcrypt"
				case "zsh":
					sh.Example = "  fieldcrypt completion zsh > \"${fpath[1]}/_fieldcrypt\""
				case "fish":
					sh.Example = "  fieldcrypt completion fish > ~/.config/fish/completions/fieldcrypt.fish"
				case "powershell":
					sh.Example = "  fieldcrypt completion powershell | Out-String | Invoke-Expression"
				}
			}
		}
	}
	return root
}

// registerCompletions completes flag values: classes, output formats and
// the configured columns.
func (a *app) registerCompletions(root *cobra.Command) {
	fixed := func(vals ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return vals, cobra.ShellCompDirectiveNoFileComp
		}
	}
	_ = root.RegisterFlagCompletionFunc("output", fixed("text", "json"))
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Flags().Lookup("class") != nil {
			_ = c.RegisterFlagCompletionFunc("class", fixed("critical", "high", "moderate", "low"))
		}
		if c.Flags().Lookup("column") != nil {
			_ = c.RegisterFlagCompletionFunc("column", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
				cfg, err := LoadConfig(a.io.Dir, a.io.Getenv, a.overrides())
				if err != nil {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				var names []string
				for _, col := range cfg.Columns {
					names = append(names, col.Name())
				}
				return names, cobra.ShellCompDirectiveNoFileComp
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func exitCodeHelp() string {
	var b strings.Builder
	for _, e := range ExitCodes {
		fmt.Fprintf(&b, "  %3d  %s\n", e.Code, e.Meaning)
	}
	return b.String()
}

func (a *app) exitCodesCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "exit-codes",
		Short:   "List the exit codes and what they mean",
		Example: "  fieldcrypt exit-codes\n  fieldcrypt exit-codes -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			type row struct {
				Code    int    `json:"code"`
				Meaning string `json:"meaning"`
			}
			var rows []row
			for _, e := range ExitCodes {
				rows = append(rows, row{e.Code, e.Meaning})
			}
			return a.emit(rows, func(w io.Writer) { fmt.Fprint(w, exitCodeHelp()) })
		},
	}
}

// noArgs is cobra.NoArgs as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments (got %q)", cmd.CommandPath(), args)
	}
	return nil
}
