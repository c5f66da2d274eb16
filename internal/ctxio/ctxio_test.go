package ctxio

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// The stream reads through until the context ends, then fails with its cause.
func TestReaderEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	r := Reader(ctx, strings.NewReader("abcdef"))
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil || string(buf) != "abc" {
		t.Fatalf("read before the end: %d %v %q", n, err, buf)
	}
	stop := errors.New("stopped")
	cancel(stop)
	if _, err := io.ReadAll(r); !errors.Is(err, stop) {
		t.Fatalf("read after the end: %v, want the cause", err)
	}
}
