package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Under unshare -r (root only inside a user namespace: every capability, none over the host's
// files) publish refuses before it creates anything, naming the missing privilege, as it does for
// a plain user. The test runs itself again under unshare -r.
func TestPublishAsFakeRootNamesTheMissingPrivilege(t *testing.T) {
	if dir := os.Getenv("CARGOHOLD_TEST_USERNS_DIR"); dir != "" {
		store := filepath.Join(dir, "new", "store")
		r := cargohold(t, publishArgs(store)...)
		r.want(t, 2, "needs root on the host", "missing CAP_CHOWN, CAP_MKNOD and CAP_SYS_ADMIN in the host's user namespace",
			"unshare -r")
		return
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("needs unshare (util-linux, in every Debian): %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command(unshare, "-r", os.Args[0], "-test.run=^TestPublishAsFakeRootNamesTheMissingPrivilege$", "-test.v")
	cmd.Env = append(os.Environ(), "CARGOHOLD_TEST_USERNS_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestPublishAsFakeRootNamesTheMissingPrivilege") {
		t.Fatalf("under unshare -r: %v\n%s", err, out)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("publish under unshare -r created %v (%v)", entries, err)
	}
}
