package errkind

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// A marked error is its kind and still everything it wrapped, and reads as it did.
func TestWith(t *testing.T) {
	kind := errors.New("store")
	other := errors.New("usage")
	cause := &fs.PathError{Op: "open", Path: "/srv/images/overlay-images/images.json", Err: fs.ErrPermission}
	err := With(kind, fmt.Errorf("opening store /srv/images: %w", cause))

	if got, want := err.Error(), "opening store /srv/images: open /srv/images/overlay-images/images.json: permission denied"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, kind) {
		t.Error("errors.Is(err, kind) = false")
	}
	if errors.Is(err, other) {
		t.Error("errors.Is(err, another kind) = true")
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Error("errors.Is(err, fs.ErrPermission) = false: the wrapped chain is lost")
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != cause.Path {
		t.Errorf("errors.As(err, *fs.PathError) = %v", pe)
	}
	// Marked again, with another kind: both kinds are found.
	again := With(other, fmt.Errorf("publishing: %w", err))
	if !errors.Is(again, other) || !errors.Is(again, kind) {
		t.Errorf("a twice-marked error lost a kind: Is(other)=%v Is(kind)=%v", errors.Is(again, other), errors.Is(again, kind))
	}
}
