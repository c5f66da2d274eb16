package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/distribution/registry/api/errcode"
	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/types"
)

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("pinging: %w", syscall.ECONNREFUSED), true},
		{"too many requests", docker.ErrTooManyRequests, true},
		{"HTTP 503", docker.UnexpectedHTTPStatusError{StatusCode: http.StatusServiceUnavailable}, true},
		{"HTTP 404", docker.UnexpectedHTTPStatusError{StatusCode: http.StatusNotFound}, false},
		{"registry unavailable", errcode.Errors{errcode.ErrorCodeUnavailable.WithMessage("down")}, true},
		{"registry unauthorized", errcode.Errors{errcode.ErrorCodeUnauthorized.WithMessage("who")}, false},
		{"unavailable, wrapped", fmt.Errorf("reading manifest: %w", errcode.ErrorCodeUnavailable), true},
		{"bad credentials", docker.ErrUnauthorizedForCredentials{Err: errors.New("no")}, false},
		{"cancelled", context.Canceled, false},
		{"manifest unknown", errors.New("manifest unknown"), false},
		{"a missing file", &fs.PathError{Op: "open", Path: "/x/index.json", Err: syscall.ENOENT}, false},
		{"no route to host", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no route to host")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := transient(tc.err); got != tc.want {
				t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestRetryStopsAtTheLimitAndOnPermanentErrors(t *testing.T) {
	calls := 0
	flaky := func() error { calls++; return syscall.ECONNRESET }
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no waiting: a cancelled context ends the pause at once
	if err := retry(ctx, 3, "x", flaky); !errors.Is(err, syscall.ECONNRESET) || calls != 1 {
		t.Errorf("cancelled: %v after %d calls, want ECONNRESET after 1", err, calls)
	}
	calls = 0
	permanent := func() error { calls++; return errors.New("manifest unknown") }
	if err := retry(context.Background(), 3, "x", permanent); err == nil || calls != 1 {
		t.Errorf("permanent: %v after %d calls, want 1 call", err, calls)
	}
	calls = 0
	healing := func() error {
		calls++
		if calls < 2 {
			return docker.ErrTooManyRequests
		}
		return nil
	}
	if err := retry(context.Background(), 3, "x", healing); err != nil || calls != 2 {
		t.Errorf("healing: %v after %d calls, want success after 2", err, calls)
	}
	calls = 0
	if err := retry(context.Background(), 0, "x", healing); err == nil || calls != 1 {
		t.Errorf("retries 0: %v after %d calls, want the error after 1 call", err, calls)
	}
}

func TestExplainAuthNamesRegistryAndFile(t *testing.T) {
	ref, err := docker.ParseReference("//registry.example:5000/team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{AuthFilePath: "/etc/cargohold/auth.json"}
	err = explainAuth(docker.ErrUnauthorizedForCredentials{Err: errors.New("denied")}, ref, sys)
	for _, want := range []string{"registry.example:5000", "/etc/cargohold/auth.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %s", err, want)
		}
	}
	plain := errors.New("manifest unknown")
	if got := explainAuth(plain, ref, sys); !errors.Is(got, plain) || got.Error() != plain.Error() {
		t.Errorf("a non-auth error was changed: %v", got)
	}
}

// The retries of a Publish go into its notes (Result.Retries, and OnRetry as they happen), not to
// the log: a retry that worked is no news to a --quiet run.
func TestRetriesAreNotedNotLogged(t *testing.T) {
	var logged bytes.Buffer
	logrus.SetOutput(&logged)
	defer logrus.SetOutput(os.Stderr)
	var live []string
	notes := &retryNotes{live: func(msg string) { live = append(live, msg) }}
	calls := 0
	healing := func() error {
		calls++
		if calls < 2 {
			return docker.ErrTooManyRequests
		}
		return nil
	}
	if err := retry(withRetryNotes(context.Background(), notes), 3, "reading x", healing); err != nil {
		t.Fatal(err)
	}
	if got := notes.list(); len(got) != 1 || !strings.Contains(got[0], "reading x failed") || !strings.Contains(got[0], "(1 of 3)") {
		t.Errorf("notes %q", got)
	}
	if len(live) != 1 || logged.Len() != 0 {
		t.Errorf("live %q, logged %q", live, logged.String())
	}
}
