package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show or validate the effective configuration",
		Example: `  fieldcrypt config show
  fieldcrypt config validate --config /etc/fieldcrypt.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (flags > env > file > defaults), password redacted",
		Example: `  fieldcrypt config show
  FIELDCRYPT_DATABASE=postgres://app:secret@db/app fieldcrypt config show -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(false)
			if err != nil {
				return err
			}
			r := cfg.Redacted()
			return a.emit(r, func(w io.Writer) {
				if r.Path != "" {
					fmt.Fprintf(w, "# from %s, environment and flags\n", r.Path)
				} else {
					fmt.Fprintln(w, "# no config file; defaults, environment and flags")
				}
				enc := yaml.NewEncoder(w)
				enc.SetIndent(2)
				_ = enc.Encode(r)
			})
		},
	}
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration without touching the database or the KMS",
		Example: `  fieldcrypt config validate
  fieldcrypt config validate --config staging.yaml -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(true)
			if err != nil {
				return err
			}
			res := map[string]any{"valid": true, "config_file": cfg.Path, "classes": len(cfg.EncryptedClasses()), "columns": len(cfg.Columns)}
			return a.emit(res, func(w io.Writer) {
				fmt.Fprintf(w, "configuration OK: %d classes, %d columns (%s)\n", len(cfg.EncryptedClasses()), len(cfg.Columns), orDefault(cfg.Path, "no config file"))
			})
		},
	}
	cmd.AddCommand(show, validate)
	return cmd
}
