package storageconf

import (
	"bytes"
	"flag"
	"github.com/BurntSushi/toml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/layout/driver"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const store = "/srv/images"

// golden compares got with testdata/golden/name (or rewrites it with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func input(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "in", name+".conf"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Every input gets the store added: the result must match its golden file, keep every
// byte outside the list's lines (checked by the decode comparison inside AddToText and by
// the golden file), be idempotent, and go back byte for byte when the store is removed.
func TestAddGolden(t *testing.T) {
	tests := []struct {
		in, suffix string // the golden file is IN-add[-SUFFIX].conf
		store      string
		// roundTrip: removing the store again restores the input byte for byte. Not for
		// inputs whose list had to be created (removal leaves an empty list behind).
		roundTrip bool
	}{
		{"debian", "", store, true},
		{"commented", "", store, true},
		{"commented", "quoted", `/srv/my "images"\store`, true}, // quotes, backslash, space
		{"oneline", "", store, true},
		{"empty-oneline", "", store, true},
		{"no-key", "", store, false},
		{"no-options", "", store, false},
		{"dotted", "", store, false},
		{"dotted-list", "", store, true},
		{"root-dotted", "", store, false},
		{"root-dotted-driver", "", store, false},
		{"append-attr", "", store, true},
		{"append-only", "", store, true},
		{"empty", "", store, false},
		{"crlf", "", store, true},
		{"no-eol", "", store, false},
		{"no-trailing-comma", "", store, false}, // "/b" keeps the comma it got
		{"comment-only", "", store, true},
		{"mixed-lines", "c", "/c", false}, // "/b" keeps the comma it got
	}
	for _, tt := range tests {
		name := tt.in + "-add"
		if tt.suffix != "" {
			name += "-" + tt.suffix
		}
		t.Run(name, func(t *testing.T) {
			in := input(t, tt.in)
			out, changed, err := AddToText(tt.in+".conf", in, tt.store)
			if err != nil {
				t.Fatal(err)
			}
			if !changed {
				t.Fatal("changed = false")
			}
			golden(t, name+".conf", out)

			stores, err := StoresInText("out", out)
			if err != nil {
				t.Fatal(err)
			}
			if stores[len(stores)-1] != tt.store && !strings.Contains(tt.in, "mixed") {
				t.Errorf("stores = %q, want %q last", stores, tt.store)
			}

			again, changed, err := AddToText(tt.in+".conf", out, tt.store)
			if err != nil || changed || !bytes.Equal(again, out) {
				t.Errorf("second add: changed=%v err=%v, want no change", changed, err)
			}
			_, changed, err = AddToText(tt.in+".conf", out, tt.store+"/")
			if err != nil || changed {
				t.Errorf("adding %s/ (same store): changed=%v err=%v, want no change", tt.store, changed, err)
			}

			back, changed, err := RemoveFromText(tt.in+".conf", out, tt.store)
			if err != nil || !changed {
				t.Fatalf("remove: changed=%v err=%v", changed, err)
			}
			if tt.roundTrip && !bytes.Equal(back, in) {
				t.Errorf("removing the store again does not restore the input:\n%s", back)
			}
		})
	}
}

func TestRemoveGolden(t *testing.T) {
	tests := []struct{ in, store string }{
		{"commented", "/nfs/images"},            // a line with its comment
		{"commented", "/scratch/literal store"}, // a literal string, last, trailing comma
		{"oneline", "/a"},                       // first on one line
		{"oneline", "/b"},                       // last on one line
		{"dotted-list", "/a"},                   // sole element
		{"duplicates", store},                   // every spelling of the store
		{"no-trailing-comma", "/b"},             // last line without comma
		{"mixed-lines", store},                  // shares its line
		{"append-attr", "/a"},                   // the attribute stays
	}
	for _, tt := range tests {
		name := tt.in + "-remove-" + strings.NewReplacer("/", "", " ", "-").Replace(tt.store)
		t.Run(name, func(t *testing.T) {
			out, changed, err := RemoveFromText(tt.in+".conf", input(t, tt.in), tt.store)
			if err != nil {
				t.Fatal(err)
			}
			if !changed {
				t.Fatal("changed = false")
			}
			golden(t, name+".conf", out)
			again, changed, err := RemoveFromText(tt.in+".conf", out, tt.store)
			if err != nil || changed || !bytes.Equal(again, out) {
				t.Errorf("second remove: changed=%v err=%v, want no change", changed, err)
			}
		})
	}
}

func TestRemoveAbsent(t *testing.T) {
	for _, in := range []string{"debian", "empty", "no-options", "oneline"} {
		t.Run(in, func(t *testing.T) {
			data := input(t, in)
			out, changed, err := RemoveFromText(in, data, store)
			if err != nil || changed || !bytes.Equal(out, data) {
				t.Errorf("%s: changed=%v err=%v, want no change", in, changed, err)
			}
		})
	}
}

// Bad input gets an error naming the file, the line when there is one, and what to do.
func TestPatchErrors(t *testing.T) {
	tests := []struct {
		name, conf, store, want string
	}{
		{"bad toml", "[storage]\ndriver = \"overlay\"\ngraphroot = /var/lib\n", store,
			`storage.conf:3: not valid TOML`},
		{"unterminated array", "[storage.options]\nadditionalimagestores = [\"/a\"\n", store,
			`storage.conf:2: not valid TOML`},
		{"duplicate table", "[storage]\n[storage]\n", store, `storage.conf:2: not valid TOML`},
		{"inline options", "[storage]\noptions = { additionalimagestores = [\"/a\"] }\n", store,
			`storage.conf:2: storage.options is an inline table`},
		{"inline storage", "storage = { driver = \"overlay\" }\n", store,
			`storage.conf:1: storage is an inline table`},
		{"string, not list", "[storage.options]\nadditionalimagestores = \"/a\"\n", store,
			`storage.conf:2: additionalimagestores must be a list of paths`},
		{"numbers in list", "[storage.options]\nadditionalimagestores = [1]\n", store,
			`storage.conf:2: additionalimagestores must hold paths`},
		{"unknown attribute", "[storage.options]\nadditionalimagestores = [{prepend = true}]\n", store,
			`unknown attribute prepend`},
		{"options not a table", "[storage]\noptions = 1\n", store, `storage.conf:2: storage.options is a value, not a table`},
		{"array of tables", "[[storage.options]]\n", store, `storage.conf:1: storage.options is an array of tables`},
		{"mixed case key", "[storage.options]\nAdditionalImageStores = []\n", store,
			`storage.conf:2: key "AdditionalImageStores": write it in lowercase`},
		{"relative store", "", "srv/images", `not absolute`},
		{"comma in store", "", "/srv/a,b", `contains a comma`},
		{"newline in store", "", "/srv/a\nb", `control character`},
		{"empty store", "", "", `empty store path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := AddToText("storage.conf", []byte(tt.conf), tt.store)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/images":        `"/srv/images"`,
		`/srv/my "x"`:        `"/srv/my \"x\""`,
		`/srv/back\slash`:    `"/srv/back\\slash"`,
		"/srv/ünïcode space": `"/srv/ünïcode space"`,
	} {
		t.Run(in, func(t *testing.T) {
			if got := quote(in); got != want {
				t.Errorf("quote(%q) = %s, want %s", in, got, want)
			}
		})
	}
}

func TestSnippetParses(t *testing.T) {
	for _, d := range []driver.Driver{driver.Overlay, driver.VFS} {
		t.Run(string(d), func(t *testing.T) {
			s, err := Snippet(`/srv/my "images"`, d)
			if err != nil {
				t.Fatal(err)
			}
			stores, err := StoresInText("snippet", []byte(s))
			if err != nil || len(stores) != 1 || stores[0] != `/srv/my "images"` {
				t.Errorf("%s snippet lists %q (%v):\n%s", d, stores, err, s)
			}
			if !strings.Contains(s, string(d)+".imagestore=") {
				t.Errorf("%s snippet lacks the command-line form:\n%s", d, s)
			}
		})
	}
	var vfs struct {
		Storage struct{ Driver string }
	}
	if _, err := toml.Decode(string(must(Snippet(store, "vfs"))), &vfs); err != nil || vfs.Storage.Driver != "vfs" {
		t.Errorf("the vfs snippet sets [storage] driver = %q (%v), want vfs", vfs.Storage.Driver, err)
	}
	if _, err := Snippet(store, "btrfs"); err == nil {
		t.Error("Snippet accepted driver btrfs")
	}
	golden(t, "snippet-overlay.conf", must(Snippet(store, "overlay")))
	golden(t, "snippet-dropin.conf", must(DropInSnippet(store)))
}

func must(s string, err error) []byte {
	if err != nil {
		panic(err)
	}
	return []byte(s)
}

// Two spellings of one store (a symlinked parent) are one store: patch adds it once, remove takes
// out either spelling, check sees it listed. Podman would list it twice: every image twice.
func TestSymlinkedStoreIsOneStore(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real", "store")
	setUp(t, os.MkdirAll(real, 0o755))
	setUp(t, os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "link")))
	link := filepath.Join(base, "link", "store")
	for _, spellings := range [][2]string{{real, link}, {link, real}} {
		listed, given := spellings[0], spellings[1]
		file := filepath.Join(t.TempDir(), "storage.conf")
		if _, err := AddStore(file, listed, Options{Base: "/dev/null"}); err != nil {
			t.Fatal(err)
		}
		before := readFile(t, file)
		res, err := AddStore(file, given, Options{})
		if err != nil || res.Changed || !bytes.Equal(readFile(t, file), before) {
			t.Errorf("%s listed, %s added again: %+v, %v\n%s", listed, given, res, err, readFile(t, file))
		}
		s := newSandbox(t)
		t.Setenv("CONTAINERS_STORAGE_CONF", file)
		if r, err := Check(given, "overlay", Lookup{UID: 1000, Reader: Legacy, Root: s.root}); err != nil || !r.Listed {
			t.Errorf("%s listed, check of %s: %+v, %v", listed, given, r, err)
		}
		if res, err = RemoveStore(file, given, Options{}); err != nil || !res.Changed || len(res.Stores) != 0 {
			t.Errorf("%s listed, %s removed: %+v, %v", listed, given, res, err)
		}
	}
}
