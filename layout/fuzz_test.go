package layout

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzStoreMetadata feeds arbitrary images.json and layers.json to what reads a store that may be
// damaged or hostile (ls, inspect, the record and leftover checks of check): none of it may panic,
// and a damaged file is an error, not a crash of every reader.
//
//	go test -run XXX -fuzz FuzzStoreMetadata -fuzztime 10m ./layout
func FuzzStoreMetadata(f *testing.F) {
	const base = "e878d5381de0f4a104144c1e22091c113c273dc3d448760dd224ff118f3b5ff8"
	const child = "1784c61b8d7217f0581670eedca62068d593f6e5a9db55161fe202d02c38a879"
	f.Add([]byte(`[{"id":"479efdc9a79d987cf0fe882a4ed3f9faef4a82f180d4f72c1eb10d5ddb78813d","digest":"sha256:`+base+`",`+
		`"names":["example.com/app:1"],"layer":"`+child+`","metadata":"{\"cargohold\":{\"source\":\"docker://x\"}}",`+
		`"big-data-names":["manifest"],"big-data-sizes":{"manifest":2},"big-data-digests":{"manifest":"sha256:`+base+`"},`+
		`"created":"2024-01-02T03:04:05Z"}]`),
		[]byte(`[{"id":"`+base+`","diff-digest":"sha256:`+base+`","diff-size":4096},`+
			`{"id":"`+child+`","parent":"`+base+`","diff-digest":"sha256:`+child+`","diff-size":2048}]`))
	f.Add([]byte(`[{"id":"x","layer":"y","names":["a","a"],"big-data-names":["sha256:x"]}]`), []byte(`[{"id":"y","parent":"y"}]`))
	f.Add([]byte(`[]`), []byte(`[{"id":"a","parent":"b"},{"id":"b","parent":"a"}]`))
	f.Add([]byte(`null`), []byte(`{}`))

	f.Fuzz(func(t *testing.T, images, layers []byte) {
		dir := t.TempDir()
		for name, data := range map[string][]byte{pathsFor(Overlay).imagesJSON: images, pathsFor(Overlay).layersJSON: layers, markerName: []byte(`{"format":1,"driver":"overlay"}`)} {
			p := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		snap, err := Read(dir)
		if err != nil {
			return
		}
		for _, img := range snap.Images {
			_, _ = snap.Info(img)
			for _, n := range img.Names {
				_, _ = snap.Find(n)
			}
		}
		_, _ = snap.Find("app")
		checkRecords(snap.Images, snap.Layers, func(string, ...any) {})
		if _, err := findLeftovers(os.DirFS(dir), snap.paths, snap.Layers, snap.Images); err != nil {
			t.Errorf("findLeftovers: %v", err)
		}
	})
}
