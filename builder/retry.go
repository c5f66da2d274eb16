package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/distribution/registry/api/errcode"
	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
)

// firstRetryDelay doubles after each try: 1s, 2s, 4s for the default 3 retries.
const firstRetryDelay = time.Second

// retry runs op, and again up to times more while it fails for a transient reason (transient), with
// a growing pause; a cancelled ctx ends the waiting. containers/image has no retry loop of its own
// (podman's lives in containers/common, which cargohold does not use).
func retry(ctx context.Context, times int, what string, op func() error) error {
	delay := firstRetryDelay
	for try := 0; ; try++ {
		err := op()
		if err == nil || try >= times || !transient(err) || ctx.Err() != nil {
			return err
		}
		note(ctx, fmt.Sprintf("%s failed (%v); trying again in %s (%d of %d)", what, err, delay, try+1, times))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// retryNotes collects the retries of one Publish (Result.Retries). A retry that worked is no news
// to a cron job, so the caller decides what to show: Publish puts the notes into the context of
// the image's requests, and passes each to Publisher.OnRetry as it happens.
type retryNotes struct {
	mu    sync.Mutex
	notes []string
	live  func(string)
}

type retryNotesKey struct{}

func withRetryNotes(ctx context.Context, n *retryNotes) context.Context {
	return context.WithValue(ctx, retryNotesKey{}, n)
}

// note records a retry in ctx's notes, or without any (a caller other than Publish) logs it as
// containers/image logs its own reconnects.
func note(ctx context.Context, msg string) {
	n, ok := ctx.Value(retryNotesKey{}).(*retryNotes)
	if !ok {
		logrus.Warn(msg)
		return
	}
	n.mu.Lock()
	n.notes = append(n.notes, msg)
	n.mu.Unlock()
	if n.live != nil {
		n.live(msg)
	}
}

func (n *retryNotes) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.notes)
}

// transient says whether err may go away by itself: a network failure, a registry overloaded or
// failing (429, 5xx). Authentication, a missing image or a corrupt blob are not retried.
func transient(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	var status docker.UnexpectedHTTPStatusError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, docker.ErrTooManyRequests), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &status):
		return status.StatusCode == http.StatusTooManyRequests || status.StatusCode >= http.StatusInternalServerError
	case errors.As(err, &opErr): // dialing, reading or writing a connection failed
		return true
	case errors.As(err, &netErr) && netErr.Timeout(): // (a syscall.Errno is a net.Error too: ask)
		return true
	}
	code := registryCode(err)
	return code == errcode.ErrorCodeUnavailable || code == errcode.ErrorCodeTooManyRequests
}

// registryCode is the error code of a registry's answer in err's chain: containers/image passes
// on an errcode.Errors, an errcode.Error or a bare errcode.ErrorCode, by case.
func registryCode(err error) errcode.ErrorCode {
	var codes errcode.Errors
	if errors.As(err, &codes) && len(codes) > 0 {
		err = codes[0]
	}
	var e errcode.Error
	var code errcode.ErrorCode
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.As(err, &code):
		return code
	}
	return errcode.ErrorCodeUnknown
}

// explainAuth adds to an authentication failure the registry and the credential files consulted,
// so that "no credentials", "wrong credentials" and "the wrong file" can be told apart.
func explainAuth(err error, ref types.ImageReference, sys *types.SystemContext) error {
	if !authFailure(err) {
		return err
	}
	registry := "the registry"
	if named := ref.DockerReference(); named != nil {
		registry = reference.Domain(named)
	}
	return fmt.Errorf("authentication to %s failed (credentials looked up in: %s): %w", registry, authFiles(sys), err)
}

func authFailure(err error) bool {
	var unauthorized docker.ErrUnauthorizedForCredentials
	if errors.As(err, &unauthorized) {
		return true
	}
	code := registryCode(err)
	return code == errcode.ErrorCodeUnauthorized || code == errcode.ErrorCodeDenied
}

// authFiles names the credential files containers/image reads for sys: the one given, or else
// those of its default search that exist here ("none" when there are none).
func authFiles(sys *types.SystemContext) string {
	if sys.AuthFilePath != "" {
		return sys.AuthFilePath
	}
	var candidates []string // containers/image's search; REGISTRY_AUTH_FILE is the caller's (publish.Input)
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "containers", "auth.json"))
	} else {
		candidates = append(candidates, fmt.Sprintf("/run/containers/%d/auth.json", os.Getuid()))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".config", "containers", "auth.json"),
			filepath.Join(home, ".docker", "config.json"), filepath.Join(home, ".dockercfg"))
	}
	var found []string
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			found = append(found, c)
		}
	}
	if len(found) == 0 {
		return "none of " + strings.Join(candidates, ", ")
	}
	return strings.Join(found, ", ")
}
