package recipe

import (
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary text to the recipe parser: it must never panic, and whatever it accepts
// must be a usable recipe (at least one image, each with a reference). Errors about a key name its
// line, which must exist in the text.
//
//	go test -run XXX -fuzz FuzzParse -fuzztime 10m ./recipe
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		good,
		withPublish,
		"store = \"/x\"\n[[image]]\nref = \"a\"\n",
		"[[image]]\nref = \"a\"\n[publish]\nbefore = \"x\"\nonfailure = \"y\"\n",
		"[defaults]\ntls-verify = \"yes\"\n[[image]]\nref = \"a\"\n",
		"[[image]]\nref = \"\"\n",
		"[[image]]\n\"ref\" = \"a\"\nnames = [\"b\", 3]\n",
		"store = \n",
		"[image]\nref = \"a\"\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		// A parse that never ends would stall the fuzzer without saying which input did it.
		done := make(chan struct{})
		var r *Recipe
		var err error
		go func() { r, err = Parse(text); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatalf("Parse(%q) takes more than 3 s", text)
		}
		if err != nil {
			if line := errorLine(err.Error()); line > strings.Count(text, "\n")+1 {
				t.Errorf("error names line %d of a %d-line text: %v", line, strings.Count(text, "\n")+1, err)
			}
			return
		}
		if len(r.Images) == 0 {
			t.Fatal("accepted a recipe without images")
		}
		for i, img := range r.Images {
			if strings.TrimSpace(img.Ref) == "" {
				t.Errorf("accepted image %d without a ref", i)
			}
			_ = img.Over(r.Defaults)
		}
	})
}

// errorLine is N of an error that starts with "line N: ", else 0.
func errorLine(msg string) int {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0
	}
	n := 0
	for _, c := range rest {
		if c < '0' || c > '9' || n > 1<<30 {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
