package layout

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkOpenLinks opens a store whose overlay/l/ holds 3,000 links (about a 1,000-image store),
// reading every link (full) or finding l/ as last recorded (recorded).
func BenchmarkOpenLinks(b *testing.B) {
	dir := b.TempDir()
	s, err := OpenWithOptions(b.Context(), dir, Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	keepStore(s)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	id := strings.Repeat("a", 64) // one recorded layer all links lead to: the scan reads them alike
	if err := os.MkdirAll(filepath.Join(dir, "overlay", id, "diff"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "overlay-layers/layers.json"), []byte(`[{"id":"`+id+`"}]`), 0o644); err != nil {
		b.Fatal(err)
	}
	for i := range 3000 {
		name := fmt.Sprintf("BENCH%021d", i)
		name = strings.Map(func(r rune) rune { return map[bool]rune{true: 'A' + (r-'0')%26, false: r}[r >= '0' && r <= '9'] }, name)
		if err := os.Symlink(linkTarget(id), filepath.Join(dir, "overlay/l", name)); err != nil {
			b.Fatal(err)
		}
	}
	for _, full := range []bool{true, false} {
		b.Run(map[bool]string{true: "full", false: "recorded"}[full], func(b *testing.B) {
			for b.Loop() {
				if full {
					_ = os.Remove(filepath.Join(dir, linksCheckedName))
				}
				s, err := OpenWithOptions(b.Context(), dir, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if len(s.Cleaned()) != 0 {
					b.Fatalf("cleaned %v", s.Cleaned())
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
