package layout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.podman.io/storage"
)

// errStopped is the cause the tests cancel with, as the CLI cancels with the signal that stopped it.
var errStopped = errors.New("stopped by the test")

func cancelled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errStopped)
	return ctx
}

// A wait for another run's lock ends with the context, and leaves nothing behind that takes the
// lock later: once the holder closes, the store can be opened at once.
func TestLockWaitEndsWithTheContext(t *testing.T) {
	dir := t.TempDir()
	held := openStore(t, dir)
	ctx, cancel := context.WithCancelCause(t.Context())
	waiting := make(chan struct{})
	opened := make(chan error, 1)
	go func() {
		s, err := OpenWithOptions(ctx, dir, Options{Lock: LockOptions{Waiting: func(int) { close(waiting) }}})
		if err == nil {
			_ = s.Close() // the test fails below: the open should not have succeeded
		}
		opened <- err
	}()
	<-waiting
	cancel(errStopped)
	select {
	case err := <-opened:
		if !errors.Is(err, errStopped) {
			t.Fatalf("the open waiting for the lock returned %v, want the context's cause", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the lock wait did not end with its context")
	}
	closeStore(t, held)
	s, err := OpenWithOptions(t.Context(), dir, Options{Lock: LockOptions{NoWait: true}})
	if err != nil {
		t.Fatalf("after the cancelled wait and the holder's Close, the store is still locked: %v", err)
	}
	closeStore(t, s)
}

// Remove, GC and Repair write nothing once their context has ended; Check reports the cause.
func TestCancelledContextWritesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	base := commitTestLayer(t, s, "", baseEntries)
	putImage(t, s, testImageMeta(t, []testLayer{base}, []string{"example.com/app:1"}, "app"))
	imagesJSON := filepath.Join(dir, "overlay-images", "images.json")
	before, err := os.ReadFile(imagesJSON)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(cancelled(t), "example.com/app:1", RemoveOptions{}); !errors.Is(err, errStopped) {
		t.Errorf("Remove with an ended context: %v, want the cause", err)
	}
	if _, err := s.GC(cancelled(t), 0, time.Now(), false); !errors.Is(err, errStopped) {
		t.Errorf("GC with an ended context: %v, want the cause", err)
	}
	if _, err := s.Repair(cancelled(t)); !errors.Is(err, errStopped) {
		t.Errorf("Repair with an ended context: %v, want the cause", err)
	}
	if after, err := os.ReadFile(imagesJSON); err != nil || string(after) != string(before) {
		t.Errorf("images.json changed: %v\n%s\nwas\n%s", err, after, before)
	}
	if !slices.ContainsFunc(s.Images(), func(img storage.Image) bool { return slices.Contains(img.Names, "example.com/app:1") }) {
		t.Error("the image lost its name")
	}
	closeStore(t, s)
	if _, err := Check(cancelled(t), dir, CheckOptions{Deep: true}); !errors.Is(err, errStopped) {
		t.Errorf("Check with an ended context: %v, want the cause", err)
	}
}
