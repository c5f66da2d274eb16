package cvmfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepoOfStore(t *testing.T) {
	for store, want := range map[string]string{
		"/cvmfs/sw.example.org/images": "sw.example.org",
		"/cvmfs/sw.example.org":        "sw.example.org",
		"/cvmfs//sw.example.org/a/":    "sw.example.org",
		"/srv/images":                  "",
		"/cvmfsx/a":                    "",
	} {
		if got := RepoOfStore(store); got != want {
			t.Errorf("RepoOfStore(%q) = %q, want %q", store, got, want)
		}
	}
}

func TestResolveRepo(t *testing.T) {
	for _, tc := range []struct{ name, dir, configured, want, error string }{
		{"from the path", "/cvmfs/sw.example.org/images", "", "sw.example.org", ""},
		{"both, the same", "/cvmfs/sw.example.org/images", "sw.example.org", "sw.example.org", ""},
		{"configured, outside /cvmfs", "/srv/images", "sw.example.org", "sw.example.org", ""},
		{"none", "/srv/images", "", "", ""},
		{"both, different", "/cvmfs/a.org/images", "b.org", "", "is in CVMFS repository a.org, not in b.org"},
		{"not a name", "/srv/images", "a b", "", `"a b" is not a CVMFS repository name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveRepo(tc.dir, tc.configured)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Errorf("ResolveRepo(%s, %q) = %q, %v; want error %q", tc.dir, tc.configured, got, err, tc.error)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ResolveRepo(%s, %q) = %q, %v; want %q", tc.dir, tc.configured, got, err, tc.want)
			}
		})
	}
}

// writeConf writes REPO/server.conf below a new config root and returns the root.
func writeConf(t *testing.T, repo, text string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, repo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, repo, "server.conf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestLoad(t *testing.T) {
	// As mkfs writes it, with the line bringup.sh appends.
	root := writeConf(t, "test.repo", `# Created by cvmfs_server.
CVMFS_REPOSITORY_NAME=test.repo
CVMFS_REPOSITORY_TYPE=stratum0
CVMFS_USER=root
CVMFS_SPOOL_DIR=/var/spool/cvmfs/test.repo
CVMFS_STRATUM0=http://localhost/cvmfs/test.repo
CVMFS_INCLUDE_XATTRS=false
CVMFS_INCLUDE_XATTRS="true"
`)
	r, err := Load(root, "test.repo")
	if err != nil {
		t.Fatal(err)
	}
	want := Repo{Name: "test.repo", Mountpoint: "/cvmfs/test.repo", ClientView: "/var/spool/cvmfs/test.repo/rdonly",
		IncludeXattrs: true, ConfigFile: filepath.Join(root, "test.repo", "server.conf"), Spool: "/var/spool/cvmfs/test.repo"}
	if *r != want {
		t.Errorf("Load = %+v, want %+v", *r, want)
	}
	if rel, err := r.Rel("/cvmfs/test.repo/a/images/"); err != nil || rel != "a/images" {
		t.Errorf("Rel = %q, %v; want a/images", rel, err)
	}
	if _, err := r.Rel("/cvmfs/other.repo/images"); err == nil {
		t.Error("Rel accepts a store of another repository")
	}

	root = writeConf(t, "plain.repo", "CVMFS_SPOOL_DIR=/var/spool/cvmfs/plain.repo\n")
	if r, err := Load(root, "plain.repo"); err != nil || r.IncludeXattrs {
		t.Errorf("without CVMFS_INCLUDE_XATTRS: %+v, %v; want xattrs dropped", r, err)
	}
	if _, err := Load(root, "missing.repo"); err == nil || !strings.Contains(err.Error(), "release manager") {
		t.Errorf("a repository not on this machine: %v", err)
	}
}
