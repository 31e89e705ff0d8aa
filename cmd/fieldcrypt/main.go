// Command fieldcrypt manages application-level field encryption: keys,
// re-encryption of data, encrypted backups. Run 'fieldcrypt --help', or
// try 'go run ./cmd/fieldcrypt quickstart'. See docs/cli.md.
package main

import (
	"os"

	"github.com/fieldcrypt/fieldcrypt/internal/cli"
)

func main() { os.Exit(cli.Main()) }
