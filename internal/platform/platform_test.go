package platform

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Platform
		bad  bool
	}{
		{in: "linux/amd64", want: Platform{OS: "linux", Arch: "amd64"}},
		{in: "linux/arm64/v8", want: Platform{OS: "linux", Arch: "arm64", Variant: "v8"}},
		{in: "linux", bad: true},
		{in: "linux/", bad: true},
		{in: "/amd64", bad: true},
		{in: "linux/arm/v7/x", bad: true},
		{in: "linux/arm/", bad: true},
		{in: "", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.bad {
				if err == nil {
					t.Errorf("Parse(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("Parse(%q).String() = %q", tc.in, got.String())
			}
		})
	}
}

func TestMatches(t *testing.T) {
	arm64 := Platform{OS: "linux", Arch: "arm64"}
	for _, tc := range []struct {
		want, found Platform
		ok          bool
	}{
		{arm64, arm64, true},
		{arm64, Platform{OS: "linux", Arch: "arm64", Variant: "v8"}, true},
		{Platform{OS: "linux", Arch: "arm", Variant: "v7"}, Platform{OS: "linux", Arch: "arm", Variant: "v6"}, false},
		{arm64, Platform{OS: "linux", Arch: "amd64"}, false},
		{arm64, Platform{OS: "windows", Arch: "arm64"}, false},
	} {
		t.Run(tc.want.String()+" finds "+tc.found.String(), func(t *testing.T) {
			if got := tc.want.Matches(tc.found); got != tc.ok {
				t.Errorf("%v.Matches(%v) = %v, want %v", tc.want, tc.found, got, tc.ok)
			}
		})
	}
}
