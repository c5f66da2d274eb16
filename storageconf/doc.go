// Package storageconf registers cargohold stores with Podman: it prints storage.conf
// snippets, patches storage.conf files in place, writes drop-ins and per-user files, and
// works out which stores the current user's Podman will see.
//
// containers/storage reads the list of read-only stores from
//
//	[storage.options]
//	additionalimagestores = ["/srv/images"]
//
// BurntSushi/toml (what containers/storage parses with) has no round-trip editor, so
// patching is surgical: a small scanner finds the bytes of that one key (or the place it
// belongs) and only those bytes change. Every edit is checked by parsing the result and
// comparing it with the original plus the intended change; nothing is written otherwise.
package storageconf
