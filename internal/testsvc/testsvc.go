// Package testsvc gives tests the real services they run against
// (PostgreSQL, MariaDB, moto) and enforces the CI rule: under CI=true a
// test that needs a service fails when the service cannot be reached,
// instead of skipping.
package testsvc

import (
	"os"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable ends the test because a service it needs is unreachable: a
// failure under CI, a skip on a developer machine.
func Unavailable(t testing.TB, service string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required under CI=true but unreachable: %v", service, err)
	}
	t.Skipf("%s unreachable (%v); skipping (under CI=true this fails)", service, err)
}

// PostgresDSN is the DSN of the test PostgreSQL database
// (FIELDCRYPT_TEST_POSTGRES overrides it).
func PostgresDSN() string {
	if v := os.Getenv("FIELDCRYPT_TEST_POSTGRES"); v != "" {
		return v
	}
	return "host=127.0.0.1 port=5432 user=fieldcrypt dbname=fieldcrypt_test sslmode=disable"
}

// MySQLDSN is the DSN of the test MariaDB/MySQL database
// (FIELDCRYPT_TEST_MYSQL overrides it).
func MySQLDSN() string {
	if v := os.Getenv("FIELDCRYPT_TEST_MYSQL"); v != "" {
		return v
	}
	return "fieldcrypt:fieldcrypt@tcp(127.0.0.1:3306)/fieldcrypt_test?parseTime=true&multiStatements=true"
}
