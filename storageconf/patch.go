package storageconf

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// storesPath is the key containers/storage reads the additional image stores from.
var storesPath = []string{"storage", "options", "additionalimagestores"}

// AddToText returns data, the text of the storage.conf file called name, with store added
// to its additionalimagestores list. Only the bytes of that list (or of the line that
// creates it) change. changed is false, and data is returned as is, if the list already
// names the store.
func AddToText(name string, data []byte, store string) (out []byte, changed bool, err error) {
	if err := CheckStorePath(store); err != nil {
		return nil, false, err
	}
	d, err := parseDoc(name, data)
	if err != nil {
		return nil, false, err
	}
	if d.has(store) {
		return data, false, nil
	}
	var edits []edit
	if d.list != nil {
		if edits, err = d.insertIntoList(quote(store)); err != nil {
			return nil, false, err
		}
	} else {
		edits = d.insertList(quote(store))
	}
	out = apply(data, edits)
	// The new store goes after the last path in the list (see insertIntoList).
	at := 0
	for i, v := range d.stores {
		if _, ok := v.(string); ok {
			at = i + 1
		}
	}
	want := slices.Insert(slices.Clone(d.stores), at, any(store))
	if err := verify(name, data, out, want); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// RemoveFromText returns data without store in its additionalimagestores list (every
// occurrence, compared as cleaned paths). changed is false if the list does not name it.
func RemoveFromText(name string, data []byte, store string) (out []byte, changed bool, err error) {
	d, err := parseDoc(name, data)
	if err != nil {
		return nil, false, err
	}
	var want []any
	for _, v := range d.stores {
		if s, ok := v.(string); !ok || !sameStore(s, store) {
			want = append(want, v)
		}
	}
	if len(want) == len(d.stores) {
		return data, false, nil
	}
	out = data
	// One element at a time, re-reading the text after each: duplicates stay simple.
	for {
		i := slices.IndexFunc(d.stores, func(v any) bool { s, ok := v.(string); return ok && sameStore(s, store) })
		if i < 0 {
			break
		}
		edits, err := d.removeFromList(i)
		if err != nil {
			return nil, false, err
		}
		out = apply(out, edits)
		if d, err = parseDoc(name, out); err != nil {
			return nil, false, fmt.Errorf("%w (after removing %s; the file was not changed)", err, store)
		}
	}
	if want == nil {
		want = []any{}
	}
	if err := verify(name, data, out, want); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// StoresInText returns the stores a storage.conf text lists (not its attributes).
func StoresInText(name string, data []byte) ([]string, error) {
	d, err := parseDoc(name, data)
	if err != nil {
		return nil, err
	}
	return d.paths(), nil
}

// doc is a parsed storage.conf with the statements that matter for the store list.
type doc struct {
	name   string
	src    []byte
	nl     string // the file's line ending
	stmts  []statement
	list   *statement // the key/value holding additionalimagestores, if any
	stores []any      // its value: paths (string) and attributes like {append = true}
	// Where a missing list can go: the [storage.options] header, the last
	// storage.options.* key/value written with dotted keys, or the last storage.* one at
	// the top level (a file without a [storage] header).
	optionsHeader, dotted, rootStorage *statement
}

func parseDoc(name string, src []byte) (*doc, error) {
	var tree map[string]any
	if _, err := toml.Decode(string(src), &tree); err != nil {
		return nil, tomlError(name, err)
	}
	stmts, err := scanStatements(src)
	if err != nil {
		return nil, fmt.Errorf("%s:%w: cargohold cannot follow this TOML safely; add the store by hand", name, err)
	}
	d := &doc{name: name, src: src, nl: "\n", stmts: stmts}
	if bytes.Contains(src, []byte("\r\n")) {
		d.nl = "\r\n"
	}
	for i := range d.stmts {
		if err := d.note(&d.stmts[i]); err != nil {
			return nil, err
		}
	}
	if d.stores, err = storesIn(tree); err != nil {
		line := 0
		if d.list != nil {
			line = d.list.line
		}
		return nil, fmt.Errorf("%s:%d: %w", name, line, err)
	}
	if d.list != nil && d.src[d.list.valStart] != '[' {
		return nil, fmt.Errorf("%s:%d: additionalimagestores is not written as an array", name, d.list.line)
	}
	return d, nil
}

// note records what statement st is to an edit of the store list (the list itself, the
// [storage.options] header, a dotted key, a key of [storage] at the root), or refuses a shape
// cargohold does not edit.
func (d *doc) note(st *statement) error {
	p := st.path()
	if err := d.checkSpelling(st, p); err != nil {
		return err
	}
	switch {
	case st.kind == stmtKeyValue && slices.Equal(p, storesPath):
		d.list = st
	case len(p) < len(storesPath) && slices.Equal(p, storesPath[:len(p)]) && st.kind != stmtTable:
		what := "an array of tables"
		if st.kind == stmtKeyValue && d.src[st.valStart] == '{' {
			what = "an inline table"
		} else if st.kind == stmtKeyValue {
			what = "a value, not a table"
		}
		return fmt.Errorf("%s:%d: %s is %s; cargohold edits only [storage.options] tables and dotted keys: "+
			"rewrite it as a [storage.options] table, or add the store by hand", d.name, st.line, strings.Join(p, "."), what)
	case st.kind == stmtTable && slices.Equal(p, storesPath[:2]):
		d.optionsHeader = st
	case st.kind == stmtKeyValue && len(p) > 2 && slices.Equal(p[:2], storesPath[:2]) && len(st.table) < 2:
		d.dotted = st
	case st.kind == stmtKeyValue && len(st.table) == 0 && len(p) > 1 && p[0] == storesPath[0]:
		d.rootStorage = st
	}
	return nil
}

// checkSpelling refuses keys that differ from storage.options.additionalimagestores only
// in case: containers/storage's decoder would accept them, and an edit of the lowercase
// spelling next to them would be silently ignored.
func (d *doc) checkSpelling(st *statement, p []string) error {
	for i := 0; i < len(p) && i < len(storesPath); i++ {
		if p[i] == storesPath[i] {
			continue
		}
		if strings.EqualFold(p[i], storesPath[i]) {
			return fmt.Errorf("%s:%d: key %q: write it in lowercase (%q); cargohold edits only that spelling",
				d.name, st.line, p[i], storesPath[i])
		}
		return nil
	}
	return nil
}

// storesIn returns the decoded additionalimagestores value, checking its shape the way
// containers/storage does: paths, plus attribute tables such as {append = true}.
func storesIn(tree map[string]any) ([]any, error) {
	var node any = tree
	for _, k := range storesPath[:2] {
		m, _ := node.(map[string]any)
		if node = m[k]; node == nil {
			return nil, nil
		}
		if _, ok := node.(map[string]any); !ok {
			return nil, fmt.Errorf("%s is not a table", k)
		}
	}
	v, ok := node.(map[string]any)[storesPath[2]]
	if !ok {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("additionalimagestores must be a list of paths, not a %T", v)
	}
	for _, e := range list {
		switch e := e.(type) {
		case string:
		case map[string]any:
			for k, a := range e {
				if _, ok := a.(bool); k != "append" || !ok {
					return nil, fmt.Errorf("additionalimagestores: unknown attribute %s = %v (only {append = true|false})", k, a)
				}
			}
		default:
			return nil, fmt.Errorf("additionalimagestores must hold paths (strings), not %v", e)
		}
	}
	return list, nil
}

func (d *doc) paths() []string {
	var out []string
	for _, v := range d.stores {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (d *doc) has(store string) bool {
	return slices.ContainsFunc(d.paths(), func(s string) bool { return sameStore(s, store) })
}

// appends reports whether the list carries {append = true}.
func (d *doc) appends() bool {
	for _, v := range d.stores {
		if m, ok := v.(map[string]any); ok && m["append"] == true {
			return true
		}
	}
	return false
}

func tomlError(name string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d: not valid TOML: %s; fix that line first (nothing was changed)", name, pe.Position.Line, pe.Message)
	}
	return fmt.Errorf("%s: not valid TOML: %w; fix it first (nothing was changed)", name, err)
}

// verify checks that after parses, and that it decodes to exactly what before decodes to
// with the store list replaced by want: the edit touched nothing else.
func verify(name string, before, after []byte, want []any) error {
	var exp, got map[string]any
	if _, err := toml.Decode(string(before), &exp); err != nil {
		return tomlError(name, err)
	}
	if _, err := toml.Decode(string(after), &got); err != nil {
		return fmt.Errorf("%s: cargohold's edit would not parse (%v); nothing was changed: please report this "+
			"with the file, and add the store by hand", name, err)
	}
	if exp == nil {
		exp = map[string]any{}
	}
	node := exp
	for _, k := range storesPath[:2] {
		next, ok := node[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			node[k] = next
		}
		node = next
	}
	node[storesPath[2]] = want
	if !reflect.DeepEqual(exp, got) {
		return fmt.Errorf("%s: cargohold's edit would change more than the store list; nothing was changed: "+
			"please report this with the file, and add the store by hand", name)
	}
	return nil
}

// edit replaces src[at:end] with text (end == 0: insert at at).
type edit struct {
	at, end int
	text    string
}

// apply applies non-overlapping edits to a copy of src.
func apply(src []byte, edits []edit) []byte {
	slices.SortFunc(edits, func(a, b edit) int { return a.at - b.at })
	var out []byte
	prev := 0
	for _, e := range edits {
		end := max(e.end, e.at)
		out = append(out, src[prev:e.at]...)
		out = append(out, e.text...)
		prev = end
	}
	return append(out, src[prev:]...)
}
