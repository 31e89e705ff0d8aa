package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/fieldcrypt/fieldcrypt/config"
	"github.com/fieldcrypt/fieldcrypt/ops"
)

func (a *app) initCmd() *cobra.Command {
	var noBootstrap bool
	var tenantsFile string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the keyring tables and a first KEK per configured class",
		Long: `init creates the keyring tables (fieldcrypt_keks, fieldcrypt_kek_scopes) and the
re-encryption job tables in the database, and version 1 of the KEK of every
configured class. It is idempotent: existing KEKs are left alone.

With no configuration at all (no config file, no master keys in the
environment or flags) it sets up a development project in the working
directory: local master key files (mode 0600) in .fieldcrypt/, a SQLite
database fieldcrypt.db and a starter fieldcrypt.yaml, and says so.
Local master keys are for development; use a KMS in production.

With --tenant T it also creates the KEKs of tenant T in tenant-scoped classes.
With --tenants-file FILE (one tenant per line) it creates those of every
tenant listed, in bulk: tenant KEKs are wrapped by the class key, so this
makes no KMS call per tenant, and the scopes are written a few hundred per
transaction. Creating a tenant's KEKs on its first use needs no init at all.`,
		Example: `  # Development setup in the current directory
  fieldcrypt init

  # Provision the tenants of an import ahead of their traffic
  fieldcrypt init --tenants-file tenants.txt

  # Production: master keys in AWS KMS, keyring in PostgreSQL
  FIELDCRYPT_DATABASE='postgres://app@db:5432/app?sslmode=require' \
    fieldcrypt init --master-key critical=aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var created []string
			cfg, err := config.Load(a.io.Dir, a.io.Getenv, a.overrides())
			target := a.configPath
			if target == "" {
				target = a.io.Getenv(config.EnvConfig)
			}
			switch {
			case err != nil && (noBootstrap || target == "" || !errors.Is(err, fs.ErrNotExist)):
				return err
			case !noBootstrap && (err != nil || (cfg.Path == "" && len(cfg.Classes) == 0)):
				// No configuration at all (or an explicit --config that does
				// not exist yet): a development setup goes there.
				target = config.ResolvePath(a.io.Dir, orDefault(target, config.DefaultFile))
				db := orDefault(a.database, orDefault(a.io.Getenv(config.EnvDatabase), config.DefaultDatabase))
				files, err := ops.Bootstrap(target, db)
				created = append(created, files...)
				if err != nil {
					return err
				}
				a.configPath = target
				a.note("No configuration found: created a development setup.")
				for _, f := range files {
					a.note("  created %s", f)
				}
				a.note("Local master keys are for development only: keep .fieldcrypt/ out of version control and backups of the database.")
			}
			if cfg, err = a.config(true); err != nil {
				return err
			}
			files, err := ops.CreateLocalKeys(cfg)
			for _, f := range files {
				a.note("created local master key %s", f)
			}
			if created = append(created, files...); err != nil {
				return err
			}
			op, err := a.operator(ctx, true)
			if err != nil {
				return err
			}
			var so ops.SetupOptions
			if tenantsFile != "" {
				if so.Tenants, err = ops.ReadTenants(config.ResolvePath(a.io.Dir, tenantsFile)); err != nil {
					return err
				}
			}
			res, err := op.Setup(ctx, so) // the keyring records kek.created
			if err != nil {
				return err
			}
			res.CreatedFiles = append(res.CreatedFiles, created...)
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "Keyring %q in %s\n", res.Keyring, res.Database)
				for _, k := range res.Created {
					fmt.Fprintf(w, "  created  %s v%d under %s\n", k.Ref.Scope(), k.Ref.Version, k.MasterKeyURI)
				}
				for _, k := range res.Existing {
					fmt.Fprintf(w, "  exists   %s v%d (primary)\n", k.Ref.Scope(), k.Ref.Version)
				}
				if tenantsFile != "" {
					fmt.Fprintf(w, "  tenants: %d scopes created, %d existed\n", res.TenantsCreated, res.TenantsExisting)
				}
				if res.ConfigFile != "" {
					fmt.Fprintf(w, "Config: %s\n", res.ConfigFile)
				}
				if len(cfg.Columns) == 0 {
					fmt.Fprintln(w, "Next: list your encrypted columns under 'columns:' in the config, then run 'fieldcrypt keys census'.")
				} else {
					fmt.Fprintf(w, "Next: 'fieldcrypt keys census' shows the %d configured columns.\n", len(cfg.Columns))
				}
			})
		},
	}
	cmd.Flags().BoolVar(&noBootstrap, "no-bootstrap", false, "never create local key files or a starter config")
	cmd.Flags().StringVar(&tenantsFile, "tenants-file", "", "also create the KEKs of every tenant listed in FILE (one per line), in bulk")
	return cmd
}
