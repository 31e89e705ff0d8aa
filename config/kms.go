package config

import (
	"github.com/fieldcrypt/fieldcrypt/keyring/kms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/awskms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/gcpkms"
	"github.com/fieldcrypt/fieldcrypt/keyring/kms/localkms"
)

// KMS configures the master-key backends. The zero value is production:
// the real AWS KMS and Cloud KMS endpoints, over TLS, authenticated. It is
// read from the file only: no environment variable changes where keys go.
type KMS struct {
	AWS Endpoint `yaml:"aws,omitempty" json:"aws,omitzero"`
	GCP Endpoint `yaml:"gcp,omitempty" json:"gcp,omitzero"`
}

// Endpoint points a backend at an emulator.
type Endpoint struct {
	// Endpoint is the emulator's address: a URL for AWS
	// (http://127.0.0.1:5000), host:port for Google Cloud.
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// Insecure allows plaintext transport (and, for Google Cloud, no
	// authentication): keys cross the network in clear. Emulators only.
	Insecure bool `yaml:"insecure,omitempty" json:"insecure,omitempty"`
}

// Registry returns the registry that opens this configuration's master
// keys: the backends with the kms: section's settings, relative local://
// paths resolved against the configuration file's directory, and any
// scheme registered in kms.DefaultRegistry.
func (c *Config) Registry() *kms.Registry {
	reg := new(kms.Registry)
	for _, s := range kms.DefaultRegistry.Schemes() {
		reg.Register(s, kms.DefaultRegistry)
	}
	reg.Register(localkms.Scheme, localkms.Opener{Dir: c.BaseDir})
	reg.Register(awskms.Scheme, awskms.Opener{Endpoint: c.KMS.AWS.Endpoint, Insecure: c.KMS.AWS.Insecure, DisableIMDS: c.KMS.AWS.Endpoint != ""})
	reg.Register(gcpkms.Scheme, gcpkms.Opener{Endpoint: c.KMS.GCP.Endpoint, Insecure: c.KMS.GCP.Insecure})
	return reg
}

// LocalKeyPath returns the file a local:// URI names, resolved against the
// configuration file's directory, or "" for another scheme.
func (c *Config) LocalKeyPath(uri string) string {
	p, err := localkms.Opener{Dir: c.BaseDir}.Path(uri)
	if err != nil {
		return ""
	}
	return p
}

// DSN parses the configured database URL.
func (c *Config) DSN() (DSN, error) { return ParseDSN(c.Database, c.BaseDir) }
