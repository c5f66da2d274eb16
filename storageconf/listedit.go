package storageconf

import (
	"bytes"
	"cmp"
	"fmt"
	"strings"
)

// Edits of the additionalimagestores array. They keep the array's own style: a list
// written one path per line gets a new line indented like its neighbours; a one-line list
// grows on its line. Comments, attributes ({append = true}) and other paths stay put.

// insertList adds a list to a document that has none.
func (d *doc) insertList(q string) []edit {
	line := "additionalimagestores = [" + q + "]" + d.nl
	switch {
	case d.optionsHeader != nil:
		// Right under the [storage.options] header.
		return []edit{{at: d.optionsHeader.end, text: d.newlineAt(d.optionsHeader.end) + line}}
	case d.dotted != nil || d.rootStorage != nil:
		// storage.options (or storage) is defined by dotted keys ("options.size = ..." under
		// [storage]): a header would redefine it, so continue in the same style.
		after := cmp.Or(d.dotted, d.rootStorage)
		key := strings.Join(storesPath[len(after.table):], ".")
		return []edit{{at: after.end, text: d.newlineAt(after.end) + key + " = [" + q + "]" + d.nl}}
	default:
		// A new table at the end: valid after any other table, [storage.options.*] included.
		text := "[storage.options]" + d.nl + line
		if len(bytes.TrimSpace(d.src)) > 0 {
			text = d.newlineAt(len(d.src)) + d.nl + text
		}
		return []edit{{at: len(d.src), text: text}}
	}
}

// newlineAt returns the line ending needed before text inserted at pos: one if pos is the
// end of a file whose last line has none.
func (d *doc) newlineAt(pos int) string {
	if pos == len(d.src) && pos > 0 && d.src[pos-1] != '\n' {
		return d.nl
	}
	return ""
}

// listArray scans the list's array: the offset of '[', the elements, the offset of ']'.
// The elements line up with d.stores.
func (d *doc) listArray() (open int, elems []element, closeAt int, err error) {
	s := &scanner{src: d.src, pos: d.list.valStart}
	elems, closeAt, err = s.array()
	if err == nil && len(elems) != len(d.stores) {
		err = fmt.Errorf("line %d: found %d values, the TOML parser %d", d.list.line, len(elems), len(d.stores))
	}
	if err != nil {
		return 0, nil, 0, fmt.Errorf("%s:%w: cannot edit additionalimagestores safely; edit it by hand", d.name, err)
	}
	return d.list.valStart, elems, closeAt, nil
}

// insertIntoList adds q after the last path of the list (before any attributes if it
// has no path yet).
func (d *doc) insertIntoList(q string) ([]edit, error) {
	open, elems, closeAt, err := d.listArray()
	if err != nil {
		return nil, err
	}
	multiline := bytes.IndexByte(d.src[open:closeAt], '\n') >= 0
	last := -1
	for i := range elems {
		if _, ok := d.stores[i].(string); ok {
			last = i
		}
	}
	switch {
	case last >= 0:
		e := elems[last]
		if multiline && d.aloneOnLine(e) {
			// One path per line: a new line after this one, indented the same.
			var edits []edit
			text := d.nl + d.indentOf(e.start) + q
			if e.commaStart >= 0 {
				text += "," // the list's style has trailing commas
			} else {
				edits = append(edits, edit{at: e.end, text: ","})
			}
			return append(edits, edit{at: d.contentEnd(e.end), text: text}), nil
		}
		return []edit{{at: e.end, text: ", " + q}}, nil
	case len(elems) > 0:
		// Only attributes, like {append = true}: the path goes first.
		e := elems[0]
		if multiline && d.startsLine(e.start) {
			ls := lineStart(d.src, e.start)
			return []edit{{at: ls, text: d.indentOf(e.start) + q + "," + d.nl}}, nil
		}
		return []edit{{at: e.start, text: q + ", "}}, nil
	case multiline:
		// An empty list over several lines (Debian's "additionalimagestores = [\n]").
		ls := lineStart(d.src, closeAt)
		if isBlank(d.src[ls:closeAt]) {
			return []edit{{at: ls, text: d.innerIndent(open, closeAt) + q + "," + d.nl}}, nil
		}
		return []edit{{at: open + 1, text: q}}, nil
	default:
		return []edit{{at: open + 1, end: closeAt, text: q}}, nil
	}
}

// removeFromList removes the list's element i (a path).
func (d *doc) removeFromList(i int) ([]edit, error) {
	open, elems, closeAt, err := d.listArray()
	if err != nil {
		return nil, err
	}
	e := elems[i]
	multiline := bytes.IndexByte(d.src[open:closeAt], '\n') >= 0
	switch {
	case multiline && d.aloneOnLine(e):
		// The whole line goes, with the comment that described this store.
		return []edit{{at: lineStart(d.src, e.start), end: d.lineEnd(e.end)}}, nil
	case len(elems) == 1 && !multiline:
		return []edit{{at: open + 1, end: closeAt}}, nil
	case e.commaStart >= 0:
		start, end := e.start, e.commaEnd
		if isBlank(d.src[end:d.contentEnd(end)]) {
			// Last on its line: take the space before it, not the line ending after it.
			for start > 0 && (d.src[start-1] == ' ' || d.src[start-1] == '\t') {
				start--
			}
		} else {
			for end < len(d.src) && (d.src[end] == ' ' || d.src[end] == '\t') {
				end++
			}
		}
		return []edit{{at: start, end: end}}, nil
	case i > 0:
		// The last element: drop the comma before it instead.
		p := elems[i-1]
		start := e.start
		for start > p.commaEnd && (d.src[start-1] == ' ' || d.src[start-1] == '\t') {
			start--
		}
		return []edit{{at: p.commaStart, end: p.commaEnd}, {at: start, end: e.end}}, nil
	default:
		return []edit{{at: e.start, end: e.end}}, nil
	}
}

// aloneOnLine reports whether e is the only thing on its line apart from indentation, its
// comma and a comment.
func (d *doc) aloneOnLine(e element) bool {
	if !d.startsLine(e.start) {
		return false
	}
	rest := e.end
	if e.commaStart >= 0 {
		if bytes.IndexByte(d.src[e.end:e.commaStart], '\n') >= 0 {
			return false
		}
		rest = e.commaEnd
	}
	tail := bytes.TrimLeft(d.src[rest:d.contentEnd(rest)], " \t")
	return len(tail) == 0 || tail[0] == '#'
}

func (d *doc) startsLine(pos int) bool { return isBlank(d.src[lineStart(d.src, pos):pos]) }

// indentOf returns the whitespace that starts pos's line.
func (d *doc) indentOf(pos int) string {
	ls := lineStart(d.src, pos)
	n := 0
	for ls+n < len(d.src) && (d.src[ls+n] == ' ' || d.src[ls+n] == '\t') {
		n++
	}
	return string(d.src[ls : ls+n])
}

// innerIndent returns the indentation for a new line inside an empty multi-line array:
// that of a comment inside it, else the closing bracket's plus two spaces.
func (d *doc) innerIndent(open, closeAt int) string {
	for pos := d.lineEnd(open); pos < lineStart(d.src, closeAt); pos = d.lineEnd(pos) {
		if !isBlank(d.src[pos:d.contentEnd(pos)]) {
			return d.indentOf(pos)
		}
	}
	return d.indentOf(closeAt) + "  "
}

// contentEnd returns the end of pos's line without its line ending.
func (d *doc) contentEnd(pos int) int {
	i := bytes.IndexByte(d.src[pos:], '\n')
	if i < 0 {
		return len(d.src)
	}
	end := pos + i
	if end > 0 && d.src[end-1] == '\r' {
		end--
	}
	return end
}

// lineEnd returns the offset just past pos's line ending.
func (d *doc) lineEnd(pos int) int {
	i := bytes.IndexByte(d.src[pos:], '\n')
	if i < 0 {
		return len(d.src)
	}
	return pos + i + 1
}

func lineStart(src []byte, pos int) int { return bytes.LastIndexByte(src[:pos], '\n') + 1 }

func isBlank(b []byte) bool { return len(bytes.Trim(b, " \t\r")) == 0 }
