//go:build !linux && !darwin

package archive

import "fmt"

// exchange is not available here: swaps use two renames.
func exchange(a, b string) error {
	return fmt.Errorf("exchange %s and %s: %w", a, b, errExchangeUnsupported)
}
