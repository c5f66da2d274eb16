package storageconf

import (
	"bytes"
	"fmt"
	"strconv"
)

// The scanner splits a TOML document into the statements patching needs to locate:
// table headers and key/value pairs, with byte offsets. It runs only on text that
// BurntSushi/toml has already accepted, so it follows the grammar without re-validating
// it; whatever it does not understand is an error, and the edit is refused.

type stmtKind int

const (
	stmtTable      stmtKind = iota // [a.b]
	stmtArrayTable                 // [[a.b]]
	stmtKeyValue                   // a.b = value
)

type statement struct {
	kind  stmtKind
	table []string // the table a key/value is in, or the table a header opens
	key   []string // key/value only: the (dotted) key, relative to table
	line  int      // 1-based line of the statement
	start int      // offset of the start of the statement's first line
	end   int      // offset just past the statement's last line (its comment and newline included)
	// key/value only: the value's bytes.
	valStart, valEnd int
}

// path is the statement's full key path from the document root.
func (s statement) path() []string {
	return append(append([]string(nil), s.table...), s.key...)
}

// element is one value of an array.
type element struct {
	start, end int // the value's bytes
	// the comma after the value, or -1 if none (only the last element may lack one)
	commaStart, commaEnd int
}

type scanner struct {
	src []byte
	pos int
}

func scanStatements(src []byte) ([]statement, error) {
	s := &scanner{src: src}
	var stmts []statement
	var table []string
	for {
		s.skipBlank()
		if s.eof() {
			return stmts, nil
		}
		st := statement{line: s.lineOf(s.pos), start: lineStart(s.src, s.pos)}
		var err error
		if s.peek() == '[' {
			st.kind = stmtTable
			s.pos++
			if s.peek() == '[' {
				st.kind = stmtArrayTable
				s.pos++
			}
			s.skipSpace()
			if st.table, err = s.key(); err != nil {
				return nil, err
			}
			s.skipSpace()
			closing := "]"
			if st.kind == stmtArrayTable {
				closing = "]]"
			}
			if !bytes.HasPrefix(s.src[s.pos:], []byte(closing)) {
				return nil, s.errorf("expected %q", closing)
			}
			s.pos += len(closing)
			table = st.table
		} else {
			st.kind = stmtKeyValue
			st.table = table
			if st.key, err = s.key(); err != nil {
				return nil, err
			}
			s.skipSpace()
			if s.peek() != '=' {
				return nil, s.errorf("expected '='")
			}
			s.pos++
			s.skipSpace()
			st.valStart = s.pos
			if err := s.value(); err != nil {
				return nil, err
			}
			st.valEnd = s.pos
		}
		if err := s.endOfLine(); err != nil {
			return nil, err
		}
		st.end = s.pos
		stmts = append(stmts, st)
	}
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", s.lineOf(s.pos), fmt.Sprintf(format, args...))
}

func (s *scanner) lineOf(pos int) int { return bytes.Count(s.src[:pos], []byte("\n")) + 1 }

// skipSpace skips spaces and tabs.
func (s *scanner) skipSpace() {
	for !s.eof() && (s.src[s.pos] == ' ' || s.src[s.pos] == '\t') {
		s.pos++
	}
}

// skipBlank skips whitespace, newlines and comments.
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.src[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		case '#':
			s.skipComment()
		default:
			return
		}
	}
}

func (s *scanner) skipComment() {
	if i := bytes.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
		s.pos += i
	} else {
		s.pos = len(s.src)
	}
}

// endOfLine consumes the rest of a statement's line: spaces, a comment, the newline.
func (s *scanner) endOfLine() error {
	s.skipSpace()
	if s.peek() == '#' {
		s.skipComment()
	}
	switch {
	case s.eof():
	case s.peek() == '\n':
		s.pos++
	case bytes.HasPrefix(s.src[s.pos:], []byte("\r\n")):
		s.pos += 2
	default:
		return s.errorf("unexpected %q after a statement", s.peek())
	}
	return nil
}

// key reads a (dotted) key: bare or quoted parts separated by dots.
func (s *scanner) key() ([]string, error) {
	var parts []string
	for {
		s.skipSpace()
		start := s.pos
		switch s.peek() {
		case '"', '\'':
			if err := s.str(); err != nil {
				return nil, err
			}
			raw := string(s.src[start:s.pos])
			if raw[0] == '\'' {
				parts = append(parts, raw[1:len(raw)-1])
				break
			}
			// TOML's basic-string escapes are a subset of Go's.
			unq, err := strconv.Unquote(raw)
			if err != nil {
				return nil, s.errorf("cannot read key %s", raw)
			}
			parts = append(parts, unq)
		default:
			for !s.eof() && isBareKeyByte(s.src[s.pos]) {
				s.pos++
			}
			if s.pos == start {
				return nil, s.errorf("expected a key")
			}
			parts = append(parts, string(s.src[start:s.pos]))
		}
		s.skipSpace()
		if s.peek() != '.' {
			return parts, nil
		}
		s.pos++
	}
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value skips one value of any type.
func (s *scanner) value() error {
	switch s.peek() {
	case '"', '\'':
		return s.str()
	case '[':
		_, _, err := s.array()
		return err
	case '{':
		return s.inlineTable()
	}
	// Numbers, booleans, dates: up to a delimiter. A date and a time may be separated by
	// one space ("1979-05-27 07:32:00"), which is not a delimiter there.
	start := s.pos
	for !s.eof() {
		c := s.src[s.pos]
		if c == ' ' && s.pos-start == 10 && s.src[start+4] == '-' && s.pos+3 < len(s.src) && s.src[s.pos+3] == ':' {
			s.pos++
			continue
		}
		if bytes.IndexByte([]byte(" \t\r\n,]}#"), c) >= 0 {
			break
		}
		s.pos++
	}
	if s.pos == start {
		return s.errorf("expected a value")
	}
	return nil
}

// str skips a string of any of TOML's four kinds.
func (s *scanner) str() error {
	q := s.src[s.pos]
	multi := bytes.HasPrefix(s.src[s.pos:], []byte{q, q, q})
	if multi {
		s.pos += 3
	} else {
		s.pos++
	}
	for !s.eof() {
		c := s.src[s.pos]
		switch {
		case c == '\\' && q == '"':
			s.pos += 2
		case c == q && !multi:
			s.pos++
			return nil
		case c == q && bytes.HasPrefix(s.src[s.pos:], []byte{q, q, q}):
			// Up to two more quotes may end a multi-line string's content: """a""""" is `a""`.
			n := 3
			for n < 5 && s.pos+n < len(s.src) && s.src[s.pos+n] == q {
				n++
			}
			s.pos += n
			return nil
		case c == '\n' && !multi:
			return s.errorf("unterminated string")
		default:
			s.pos++
		}
	}
	return s.errorf("unterminated string")
}

// array reads an array from its '[' and returns its elements and the offset of its ']'.
func (s *scanner) array() (elems []element, closeAt int, err error) {
	s.pos++ // '['
	for {
		s.skipBlank()
		if s.peek() == ']' {
			closeAt = s.pos
			s.pos++
			return elems, closeAt, nil
		}
		e := element{start: s.pos, commaStart: -1, commaEnd: -1}
		if err := s.value(); err != nil {
			return nil, 0, err
		}
		e.end = s.pos
		s.skipBlank()
		if s.peek() == ',' {
			e.commaStart, e.commaEnd = s.pos, s.pos+1
			s.pos++
		} else if s.peek() != ']' {
			return nil, 0, s.errorf("expected ',' or ']' in an array")
		}
		elems = append(elems, e)
	}
}

// inlineTable skips an inline table. Newlines and comments are tolerated (TOML 1.1).
func (s *scanner) inlineTable() error {
	s.pos++ // '{'
	for {
		s.skipBlank()
		if s.peek() == '}' {
			s.pos++
			return nil
		}
		if _, err := s.key(); err != nil {
			return err
		}
		s.skipSpace()
		if s.peek() != '=' {
			return s.errorf("expected '=' in an inline table")
		}
		s.pos++
		s.skipSpace()
		if err := s.value(); err != nil {
			return err
		}
		s.skipBlank()
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
		default:
			return s.errorf("expected ',' or '}' in an inline table")
		}
	}
}
