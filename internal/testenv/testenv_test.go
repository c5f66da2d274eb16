package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder stands in for a test's T to see what Missing does with it.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = format }
func (r *recorder) Skipf(format string, args ...any)  { r.skip = format }

func TestMissing(t *testing.T) {
	for _, tt := range []struct {
		name      string
		ci        string
		wantFatal bool
	}{
		{"in CI a missing requirement fails", "true", true},
		{"elsewhere it skips", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			Missing(r, "needs %s", "a tool")
			if (r.fatal != "") != tt.wantFatal || (r.skip != "") == tt.wantFatal {
				t.Errorf("CI=%q: Fatalf %q, Skipf %q; want a failure: %v", tt.ci, r.fatal, r.skip, tt.wantFatal)
			}
		})
	}
}

func TestLookPath(t *testing.T) {
	if p := LookPath(t, "sh", "dash"); !filepath.IsAbs(p) {
		t.Errorf("LookPath(sh) = %q, want an absolute path", p)
	}
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	LookPath(r, "no-such-tool-cargohold", "nothing")
	if r.fatal == "" {
		t.Error("a missing tool in CI did not fail the test")
	}
}

// As root, the rest of this test runs as nobody: it reads testdata as usual and cannot write
// where only root may.
func TestUnprivileged(t *testing.T) {
	if !Unprivileged(t) {
		return
	}
	if os.Geteuid() == 0 {
		t.Fatal("still root")
	}
	data, err := os.ReadFile(filepath.Join("testdata", "hello.txt"))
	if err != nil || !strings.HasPrefix(string(data), "testdata") {
		t.Errorf("testdata/hello.txt: %q, %v", data, err)
	}
	if err := os.WriteFile("/etc/cargohold-testenv", nil, 0o644); !errors.Is(err, os.ErrPermission) {
		t.Errorf("writing into /etc: %v, want permission denied", err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "f"), nil, 0o600); err != nil {
		t.Errorf("its own TMPDIR: %v", err)
	}
}
