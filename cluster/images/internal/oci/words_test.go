package oci

import (
	"reflect"
	"strings"
	"testing"
)

func TestShellWords(t *testing.T) {
	vars := mapLookup(map[string]string{"VERSION": "0.1.0", "EMPTY": "", "TWO": "a b"})
	tests := []struct {
		in   string
		want []string
	}{
		{`a b  c`, []string{"a", "b", "c"}},
		{`k="v w" x=y`, []string{"k=v w", "x=y"}},
		{`v="${VERSION}"`, []string{"v=0.1.0"}},
		{`v=$VERSION-rc`, []string{"v=0.1.0-rc"}},
		{`'$VERSION' "$VERSION"`, []string{"$VERSION", "0.1.0"}},
		{`a\ b`, []string{"a b"}},
		{`"say \"hi\" \$x \n"`, []string{`say "hi" $x \n`}},
		{`${MISSING:-def} ${VERSION:-def} ${EMPTY:-def}`, []string{"def", "0.1.0", "def"}},
		{`${VERSION:+set} x${MISSING:+set}`, []string{"set", "x"}},
		{`${MISSING:-$VERSION}`, []string{"0.1.0"}},
		{`$TWO "$TWO"`, []string{"a", "b", "a b"}},
		{`cost$ 5$`, []string{"cost$", "5$"}},
		{`""`, []string{""}},
		{`$MISSING`, nil},
	}
	for _, tt := range tests {
		got, err := shellWords(tt.in, vars)
		if err != nil {
			t.Errorf("shellWords(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("shellWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestShellWordsErrors(t *testing.T) {
	vars := mapLookup(nil)
	tests := []struct{ in, want string }{
		{`"open`, "unterminated double quote"},
		{`'open`, "unterminated single quote"},
		{`${X`, "missing }"},
		{`${X%y}`, "unsupported substitution"},
		{`${}`, "missing variable name"},
	}
	for _, tt := range tests {
		_, err := shellWords(tt.in, vars)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("shellWords(%q) error = %v, want one containing %q", tt.in, err, tt.want)
		}
	}
}

func TestExpandWordKeepsSpaces(t *testing.T) {
	got, err := expandWord(`a  "b c" $V`, mapLookup(map[string]string{"V": "x  y"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := "a  b c x  y"; got != want {
		t.Fatalf("expandWord = %q, want %q", got, want)
	}
}
