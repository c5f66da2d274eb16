package unpack

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// equalPrefix is the one compare loop of shared file data (reflinks and hard links): where a body
// first differs from a candidate decides what is shared.
func TestEqualPrefix(t *testing.T) {
	const chunk = 4
	body := []byte("abcdEFGHijklMN") // first "abcd", then chunks EFGH ijkl MN
	for _, tc := range []struct {
		name, cand string
		off        int64
		diff       string
	}{
		{"equal", "abcdEFGHijklMN", 14, ""},
		{"first bytes differ", "abcXEFGHijklMN", -1, ""},
		{"second chunk differs", "abcdEFGHijkXMN", 8, "ijkl"},
		{"last, short chunk differs", "abcdEFGHijklMX", 12, "MN"},
		{"candidate shorter (unreadable there)", "abcdEFGH", 8, "ijkl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "cand")
			if err := os.WriteFile(p, []byte(tc.cand), 0o600); err != nil {
				t.Fatal(err)
			}
			src, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer closeQuietly(src)
			r := bytes.NewReader(body)
			buf, cmp := make([]byte, chunk), make([]byte, chunk)
			first := buf[:chunk]
			if _, err := io.ReadFull(r, first); err != nil {
				t.Fatal(err)
			}
			off, diff, err := equalPrefix(src, r, first, int64(len(body)), buf, cmp)
			if err != nil || off != tc.off || string(diff) != tc.diff {
				t.Fatalf("off %d, diff %q, err %v; want off %d, diff %q", off, diff, err, tc.off, tc.diff)
			}
			// Nothing more read than the chunk that differs: the rest is the caller's to write.
			if rest, _ := io.ReadAll(r); off >= 0 && int64(len(rest)) != int64(len(body))-off-int64(len(diff)) {
				t.Errorf("%d bytes of the body left unread, want %d", len(rest), int64(len(body))-off-int64(len(diff)))
			}
		})
	}
}
