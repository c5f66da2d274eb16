package shell

import (
	"os/exec"
	"testing"
)

// Each quoted word reaches the program as the one argument it was.
func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"/srv/images", "", "a b", "it's", `"$HOME"`, "x;rm -rf /", "a\nb", "50%,x", "*"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != s {
			t.Errorf("Quote(%q) = %s: sh read %q", s, Quote(s), out)
		}
	}
	if got := Quote("/srv/images"); got != "/srv/images" {
		t.Errorf("a plain path is quoted: %s", got)
	}
}
