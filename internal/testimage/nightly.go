package testimage

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// A nightly-rebuild series in miniature, for the tests of shared file data (issue 18) and
// scripts/e2e-dedup: every night rebuilds an image on the same busybox base layer. Its runtime
// layer ("apt-get install" of the real thing) holds, each night:
//   - files equal in content and metadata to the night before (the bulk of a package install);
//   - files equal in content but with that night's mtime (Python's .pyc, rewritten at install);
//   - a few files whose content changes (the package database, a version file);
//   - one of each kind that sharing must get right: a hard-link group, a setuid file, a file with a
//     capability, a file of another owner, a 3 MiB file (longer than layout.KeyPrefix), a 3 MiB file
//     equal to last night's but for its last MiB, a sparse file, two equal files in one layer, and a
//     copy of a base-layer file;
//
// and its app layer a few files of that night. NightlyFiles lists the paths a test may compare.

// NightlyModules is how many .py (and .pyc) files the runtime layer holds.
const NightlyModules = 40

// NightlyTime is night n's build time (the mtime of what that night writes).
func NightlyTime(n int) time.Time { return Epoch.Add(time.Duration(n) * 24 * time.Hour) }

// Nightly is night n (1, 2, ...) of the series.
func Nightly(busybox []byte, n int, c Compression) Image {
	return Image{
		Cmd:     []string{"/bin/sh"},
		Created: NightlyTime(n),
		Layers:  []Layer{BaseLayer(busybox, c), nightlyRuntime(n, c), nightlyApp(n, c)},
	}
}

func nightlyRuntime(n int, c Compression) Layer {
	night := NightlyTime(n)
	es := []Entry{
		Dir("opt", 0o755), Dir("opt/rt", 0o755), Dir("opt/rt/lib", 0o755),
	}
	for i := range NightlyModules {
		src := fmt.Sprintf("# module %d\n%s", i, strings.Repeat(fmt.Sprintf("def f%d(): return %d\n", i, i), 40+i))
		es = append(es,
			File(fmt.Sprintf("opt/rt/lib/mod%02d.py", i), 0o644, src),
			at(BinaryFile(fmt.Sprintf("opt/rt/lib/mod%02d.pyc", i), 0o644, []byte("\x0d\x0d\x0a\x00"+src)), night),
		)
	}
	es = append(es,
		BinaryFile("opt/rt/lib/libbig.so.1", 0o755, seeded(1, 3<<20)),
		Hardlink("opt/rt/lib/libbig.so", "opt/rt/lib/libbig.so.1"),
		BinaryFile("opt/rt/lib/grow.dat", 0o644, append(seeded(2, 2<<20), seeded(uint64(100+n), 1<<20)...)),
		SparseFile("opt/rt/lib/sparse.img", 0o644, 8<<20, 4<<20, []byte("nightly sparse data")),
		Dir("opt/rt/bin", 0o755),
		File("opt/rt/bin/suidtool", 0o4755, smallTool),
		File("opt/rt/bin/captool", 0o755, smallTool).Xattr("security.capability", CapNetBindService),
		File("opt/rt/bin/tool-copy", 0o755, smallTool), // equal to suidtool but for the mode
		Dir("opt/rt/share", 0o755),
		File("opt/rt/share/owned.txt", 0o600, "private to user 1000\n").Owner(OwnerUID, OwnerUID),
		File("opt/rt/share/LICENSE", 0o644, nightlyLicense),
		Dir("opt/rt/doc", 0o755),
		File("opt/rt/doc/LICENSE", 0o644, nightlyLicense), // the same file twice in one layer
		File("opt/rt/share/passwd.example", 0o644, "root:x:0:0:root:/root:/bin/sh\n"+
			"user:x:1000:1000:user:/home/user:/bin/sh\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), // the base layer's /etc/passwd
		File("opt/rt/empty", 0o644, ""),
		at(File("opt/rt/VERSION", 0o644, fmt.Sprintf("runtime built on night %d\n", n)), night),
		Dir("var", 0o755), Dir("var/lib", 0o755),
		at(File("var/lib/status", 0o644, fmt.Sprintf("installed on night %d\n%s", n, strings.Repeat("pkg ok\n", 200))), night),
	)
	return Layer{Compression: c, CreatedBy: fmt.Sprintf("testimage: nightly runtime, night %d", n), Entries: es}
}

func nightlyApp(n int, c Compression) Layer {
	night := NightlyTime(n)
	return Layer{Compression: c, CreatedBy: fmt.Sprintf("testimage: nightly app, night %d", n), Entries: []Entry{
		Dir("app", 0o755),
		at(File("app/main.py", 0o644, "print('hello from the nightly app')\n"), night),
		at(File("app/build.txt", 0o644, fmt.Sprintf("night %d\n", n)), night),
	}}
}

const nightlyLicense = "Permission is hereby granted, free of charge, to any person obtaining a copy of this software.\n"

// seeded is size bytes of pseudo-random data from seed: the same on every run.
func seeded(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, size)
	for i := 0; i+8 <= size; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// NightlyFixtures are nights 1 to n as e2e fixtures nightly:1 ... nightly:n (gzip), with the sha256
// of a few files that sharing must get right.
func NightlyFixtures(busybox []byte, n int) []Fixture {
	var fs []Fixture
	for i := 1; i <= n; i++ {
		img := Nightly(busybox, i, Gzip)
		files := map[string]string{}
		for _, e := range img.Layers[1].Entries {
			switch e.Header.Name {
			case "opt/rt/lib/libbig.so.1", "opt/rt/lib/grow.dat", "opt/rt/lib/sparse.img", "opt/rt/lib/mod07.py", "opt/rt/lib/mod07.pyc", "opt/rt/VERSION":
				files["/"+e.Header.Name] = EntrySHA256(e)
			}
		}
		fs = append(fs, Fixture{Name: "nightly", Tag: fmt.Sprint(i), Image: img, Files: files})
	}
	return fs
}
