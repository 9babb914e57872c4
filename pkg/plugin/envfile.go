package plugin

// Why a file: the hooks' only output to the command is this file, which the shim exports.

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/s3-cache/s3-cache-buildkite-plugin/internal/atomicfile"
)

var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// writeEnvFile writes NAME=value lines for the shim to export. Values are single-line.
func writeEnvFile(path string, vars map[string]string) error {
	var b strings.Builder
	for k, v := range vars {
		if !envName.MatchString(k) || strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("output %s: not exportable", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return atomicfile.Write(path, []byte(b.String()), 0o600)
}
