package oci

import (
	"fmt"
	"strings"
	"unicode"
)

// lookupFunc returns the value of a build variable (an ARG or ENV in
// scope) and whether it is set.
type lookupFunc func(name string) (string, bool)

// shellWords splits s into words the way the Dockerfile frontend does for
// the arguments of ARG, ENV, LABEL, USER, EXPOSE, WORKDIR and COPY:
// whitespace separates words, single quotes keep their text literally,
// double quotes group text but still expand variables, a backslash escapes
// the next character, and $NAME, ${NAME}, ${NAME:-word} and ${NAME:+word}
// expand. An unquoted expansion is split on whitespace, as Docker does.
//
// Doing the same as Docker matters because a label or version that this
// builder expanded differently would silently produce a different image.
func shellWords(s string, lookup lookupFunc) ([]string, error) {
	l := &lexer{src: []rune(s), lookup: lookup}
	return l.words()
}

// expandWord expands variables and removes quotes in s without splitting it
// into words: used for values that Docker treats as one word, such as the
// value of the legacy "ENV key value" form.
func expandWord(s string, lookup lookupFunc) (string, error) {
	l := &lexer{src: []rune(s), lookup: lookup, noSplit: true}
	words, err := l.words()
	if err != nil {
		return "", err
	}
	return strings.Join(words, ""), nil
}

// lexer holds the state of one shellWords call.
type lexer struct {
	src     []rune
	pos     int
	lookup  lookupFunc
	noSplit bool // keep whitespace: the whole input is a single word

	out    []string
	cur    strings.Builder
	inWord bool
}

// words runs the lexer over the whole input.
func (l *lexer) words() ([]string, error) {
	for l.pos < len(l.src) {
		ch := l.src[l.pos]
		switch {
		case unicode.IsSpace(ch) && !l.noSplit:
			l.pos++
			l.endWord()
		case ch == '\'':
			if err := l.singleQuoted(); err != nil {
				return nil, err
			}
		case ch == '"':
			if err := l.doubleQuoted(); err != nil {
				return nil, err
			}
		case ch == '\\':
			l.pos++
			l.inWord = true
			if l.pos < len(l.src) {
				l.cur.WriteRune(l.src[l.pos])
				l.pos++
			} else {
				l.cur.WriteRune('\\')
			}
		case ch == '$':
			value, err := l.dollar()
			if err != nil {
				return nil, err
			}
			l.addUnquoted(value)
		default:
			l.cur.WriteRune(ch)
			l.inWord = true
			l.pos++
		}
	}
	l.endWord()
	return l.out, nil
}

// endWord finishes the current word, if one was started.
func (l *lexer) endWord() {
	if l.inWord {
		l.out = append(l.out, l.cur.String())
		l.cur.Reset()
		l.inWord = false
	}
}

// addUnquoted appends the value of an unquoted expansion, splitting it on
// whitespace like Docker's word processing does.
func (l *lexer) addUnquoted(value string) {
	for _, ch := range value {
		if unicode.IsSpace(ch) && !l.noSplit {
			l.endWord()
			continue
		}
		l.cur.WriteRune(ch)
		l.inWord = true
	}
}

// singleQuoted consumes '...' with no expansion and no escapes.
func (l *lexer) singleQuoted() error {
	l.pos++ // opening quote
	l.inWord = true
	for l.pos < len(l.src) {
		ch := l.src[l.pos]
		l.pos++
		if ch == '\'' {
			return nil
		}
		l.cur.WriteRune(ch)
	}
	return fmt.Errorf("unterminated single quote")
}

// doubleQuoted consumes "..." where $ expands and a backslash escapes only
// ", $ and \ (elsewhere it is kept, as in the shell and in Docker).
func (l *lexer) doubleQuoted() error {
	l.pos++ // opening quote
	l.inWord = true
	for l.pos < len(l.src) {
		ch := l.src[l.pos]
		switch ch {
		case '"':
			l.pos++
			return nil
		case '\\':
			l.pos++
			if l.pos < len(l.src) && strings.ContainsRune(`"$\`, l.src[l.pos]) {
				l.cur.WriteRune(l.src[l.pos])
				l.pos++
			} else {
				l.cur.WriteRune('\\')
			}
		case '$':
			value, err := l.dollar()
			if err != nil {
				return err
			}
			l.cur.WriteString(value)
		default:
			l.cur.WriteRune(ch)
			l.pos++
		}
	}
	return fmt.Errorf("unterminated double quote")
}

// dollar consumes a $ expansion at l.pos and returns its value. A $ that
// does not start a variable name stays a literal $.
func (l *lexer) dollar() (string, error) {
	l.pos++ // the $
	if l.pos >= len(l.src) {
		return "$", nil
	}
	if l.src[l.pos] == '{' {
		return l.braced()
	}
	start := l.pos
	for l.pos < len(l.src) && isNameRune(l.src[l.pos], l.pos == start) {
		l.pos++
	}
	if l.pos == start {
		return "$", nil
	}
	value, _ := l.lookup(string(l.src[start:l.pos]))
	return value, nil
}

// braced consumes ${NAME}, ${NAME:-word} or ${NAME:+word} (l.pos is at the
// opening brace). Other shell modifiers are refused rather than guessed.
func (l *lexer) braced() (string, error) {
	l.pos++ // {
	start := l.pos
	for l.pos < len(l.src) && isNameRune(l.src[l.pos], l.pos == start) {
		l.pos++
	}
	name := string(l.src[start:l.pos])
	if name == "" {
		return "", fmt.Errorf("bad substitution: missing variable name after ${")
	}
	if l.pos >= len(l.src) {
		return "", fmt.Errorf("bad substitution: missing } after ${%s", name)
	}
	if l.src[l.pos] == '}' {
		l.pos++
		value, _ := l.lookup(name)
		return value, nil
	}
	if l.pos+1 >= len(l.src) || l.src[l.pos] != ':' || (l.src[l.pos+1] != '-' && l.src[l.pos+1] != '+') {
		return "", fmt.Errorf("unsupported substitution in ${%s...}: only ${NAME}, ${NAME:-word} and ${NAME:+word} are supported", name)
	}
	op := l.src[l.pos+1]
	l.pos += 2
	wordStart := l.pos
	for l.pos < len(l.src) && l.src[l.pos] != '}' {
		l.pos++
	}
	if l.pos >= len(l.src) {
		return "", fmt.Errorf("bad substitution: missing } after ${%s", name)
	}
	rawWord := string(l.src[wordStart:l.pos])
	l.pos++ // }
	word, err := expandWord(rawWord, l.lookup)
	if err != nil {
		return "", err
	}
	value, ok := l.lookup(name)
	set := ok && value != ""
	if op == '-' {
		if set {
			return value, nil
		}
		return word, nil
	}
	if set {
		return word, nil
	}
	return "", nil
}

// isNameRune reports whether ch may appear in a variable name (at the
// first position when first is true).
func isNameRune(ch rune, first bool) bool {
	if ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') {
		return true
	}
	return !first && ch >= '0' && ch <= '9'
}
