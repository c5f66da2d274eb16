package testimage

import (
	"context"
	"errors"
	"fmt"

	"github.com/cargohold/cargohold/layout/podmancheck"
)

// VerifyStore is a deep podmancheck.Check of the store at dir (driver "overlay" or "vfs") for tests:
// the problems as one error, nil if there are none.
func VerifyStore(dir, driver string) error {
	problems, err := podmancheck.Check(context.Background(), dir, podmancheck.Options{Deep: true, Driver: driver})
	if err != nil {
		return err
	}
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = errors.New(p.String())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}
