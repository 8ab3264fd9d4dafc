package file

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The fuzz targets check, for any content, field and value: no panic;
// when a rewrite succeeds, the field reads back as the value, a second
// rewrite changes nothing, every byte outside the rewritten values is
// kept, and everything else in the file reads as it did. Seed corpora are
// in testdata/fuzz/<target>.

func FuzzRewriteDotenv(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte, field, value string) {
		before, readErr := readDotenv(content, field)
		out, err := rewriteDotenv(content, field, value)
		if err != nil {
			return
		}
		checkReadBack(t, out, field, value, readDotenv, rewriteDotenv)
		if readErr == nil && before == value && !bytes.Equal(out, content) {
			// Only an earlier duplicate may have differed.
			if n := countDotenv(content, field); n < 2 {
				t.Fatalf("the file held the value, and was changed")
			}
		}

		var oldSpans, newSpans []span
		kept := map[string]bool{} // tokens of the field before: left as they were when they held the value
		for _, e := range parseDotenv(content) {
			if e.name == field {
				oldSpans = append(oldSpans, e.value)
				kept[string(content[e.value.start:e.value.end])] = true
			}
		}
		for _, e := range parseDotenv(out) {
			if e.name == field {
				newSpans = append(newSpans, e.value)
				// What rekey wrote is literal to sh and every dotenv reader.
				if tok := string(out[e.value.start:e.value.end]); !kept[tok] && !literalToken(tok) {
					t.Fatalf("wrote %q, which a shell or a dotenv reader does not take literally", tok)
				}
			}
		}
		if len(oldSpans) == 0 {
			if !bytes.HasPrefix(out, content) {
				t.Fatalf("appending changed the file before the new line:\n%q\n%q", content, out)
			}
			if len(newSpans) != 1 {
				t.Fatalf("appended variable found %d times", len(newSpans))
			}
		} else {
			checkOutside(t, content, out, oldSpans, newSpans)
		}

		// Every other variable reads as it did.
		seen := map[string]bool{field: true}
		for _, e := range parseDotenv(content) {
			if seen[e.name] {
				continue
			}
			seen[e.name] = true
			v1, err1 := readDotenv(content, e.name)
			v2, err2 := readDotenv(out, e.name)
			if v1 != v2 || (err1 == nil) != (err2 == nil) {
				t.Fatalf("variable %s changed: %q (%v) -> %q (%v)", e.name, v1, err1, v2, err2)
			}
		}
	})
}

// literalToken reports whether a dotenv value token is one of the three
// forms every reader takes literally (see dotenvToken).
func literalToken(tok string) bool {
	switch {
	case len(tok) >= 2 && tok[0] == '\'' && tok[len(tok)-1] == '\'':
		return singleQuoteSafe(tok[1 : len(tok)-1])
	case len(tok) >= 2 && tok[0] == '"' && tok[len(tok)-1] == '"':
		return doubleQuoteSafe(tok[1 : len(tok)-1])
	}
	return dotenvPlainRE.MatchString(tok)
}

func countDotenv(content []byte, field string) int {
	n := 0
	for _, e := range parseDotenv(content) {
		if e.name == field {
			n++
		}
	}
	return n
}

func FuzzRewriteJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte, field, value string) {
		_, _ = readJSON(content, field)
		out, err := rewriteJSON(content, field, value)
		if err != nil {
			return
		}
		if !json.Valid(bytes.TrimPrefix(out, utf8BOM)) {
			t.Fatalf("rewrite gave invalid JSON: %q", out)
		}
		checkReadBack(t, out, field, value, readJSON, rewriteJSON)

		oldSpans, err := jsonSpans(content, field)
		if err != nil {
			t.Fatalf("spans of the original: %v", err)
		}
		newSpans, err := jsonSpans(out, field)
		if err != nil {
			t.Fatalf("spans of the rewrite: %v", err)
		}
		checkOutside(t, content, out, oldSpans, newSpans)

		// The documents are equal but for the field.
		oldDoc, newDoc := decodeJSON(t, content), decodeJSON(t, out)
		if setJSON(&oldDoc, strings.Split(field, "."), value) {
			if !reflect.DeepEqual(oldDoc, newDoc) {
				t.Fatalf("documents differ beyond the field:\n%#v\n%#v", oldDoc, newDoc)
			}
		}
	})
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(b, utf8BOM)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v
}

// setJSON sets the path in a decoded document, reporting whether it was there.
func setJSON(v *any, steps []string, value string) bool {
	if len(steps) == 0 {
		*v = value
		return true
	}
	switch c := (*v).(type) {
	case map[string]any:
		child, ok := c[steps[0]]
		if !ok {
			return false
		}
		if !setJSON(&child, steps[1:], value) {
			return false
		}
		c[steps[0]] = child
		return true
	case []any:
		i, ok := listIndex(steps[0])
		if !ok || i >= len(c) {
			return false
		}
		return setJSON(&c[i], steps[1:], value)
	}
	return false
}

func FuzzRewriteYAML(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte, field, value string) {
		_, _ = readYAML(content, field)
		out, err := rewriteYAML(content, field, value)
		if err != nil {
			return
		}
		checkReadBack(t, out, field, value, readYAML, rewriteYAML)
		if bytes.Equal(out, content) {
			return
		}

		oldDoc, err := parseYAML(content)
		if err != nil {
			t.Fatalf("parse the original: %v", err)
		}
		newDoc, err := parseYAML(out)
		if err != nil {
			t.Fatalf("parse the rewrite: %v", err)
		}
		oldMatches, _ := yamlFind(oldDoc, field)
		newMatches, _ := yamlFind(newDoc, field)
		if len(oldMatches) != len(newMatches) {
			t.Fatalf("field found %d times, then %d", len(oldMatches), len(newMatches))
		}
		targets := map[*yaml.Node]bool{}
		var oldSpans, newSpans []span
		oldLines, newLines := yamlLineStarts(content), yamlLineStarts(out)
		for i, m := range oldMatches {
			targets[m.node] = true
			targets[newMatches[i].node] = true
			n := m.node
			if n.ShortTag() == "!!str" && n.Value == value {
				continue // kept as it was
			}
			os, err := yamlLocate(content, oldLines, n, m.inFlow)
			if err != nil {
				t.Fatalf("locate in the original: %v", err)
			}
			ns, err := yamlLocate(out, newLines, newMatches[i].node, newMatches[i].inFlow)
			if err != nil {
				t.Fatalf("locate in the rewrite: %v", err)
			}
			oldSpans, newSpans = append(oldSpans, os), append(newSpans, ns)
		}
		checkOutside(t, content, out, oldSpans, newSpans)
		sameYAML(t, oldDoc, newDoc, targets, value, "")
		if a, b := yamlComments(oldDoc), yamlComments(newDoc); !slices.Equal(a, b) {
			t.Fatalf("comments differ:\n%q\n%q", a, b)
		}
	})
}

// yamlComments lists every comment in a tree, sorted.
func yamlComments(n *yaml.Node) []string {
	var out []string
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		for _, c := range []string{n.HeadComment, n.LineComment, n.FootComment} {
			if c != "" {
				out = append(out, c)
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	slices.Sort(out)
	return out
}

// sameYAML compares two node trees, but for the targets, which must hold value.
func sameYAML(t *testing.T, a, b *yaml.Node, targets map[*yaml.Node]bool, value, at string) {
	t.Helper()
	if targets[a] || targets[b] {
		if !targets[a] || !targets[b] {
			t.Fatalf("%s: a target in one tree only", at)
		}
		if b.Kind != yaml.ScalarNode || b.ShortTag() != "!!str" || b.Value != value || a.Anchor != b.Anchor {
			t.Fatalf("%s: target is %v %s %q", at, b.Kind, b.ShortTag(), b.Value)
		}
		return
	}
	// Comments are not compared node by node: yaml.v3 attaches a comment
	// to a different node depending on the style of a nearby scalar
	// ("0: 0\n#" and "0: \"0\"\n#"). Their bytes are checked by
	// checkOutside, and all of them together through yamlComments.
	if a.Kind != b.Kind || a.Style != b.Style || a.Tag != b.Tag || a.Value != b.Value || a.Anchor != b.Anchor ||
		len(a.Content) != len(b.Content) {
		t.Fatalf("%s: nodes differ:\n%+v\n%+v", at, *a, *b)
	}
	if a.Kind == yaml.AliasNode {
		if (a.Alias == nil) != (b.Alias == nil) || a.Alias != nil && a.Alias.Anchor != b.Alias.Anchor {
			t.Fatalf("%s: aliases differ", at)
		}
		return
	}
	for i := range a.Content {
		sameYAML(t, a.Content[i], b.Content[i], targets, value, at+"/"+a.Content[i].Value)
	}
}

// checkReadBack: the field reads back as value, and rewriting again
// changes nothing.
func checkReadBack(t *testing.T, out []byte, field, value string,
	read func([]byte, string) (string, error), rewrite func([]byte, string, string) ([]byte, error)) {
	t.Helper()
	got, err := read(out, field)
	if err != nil || got != value {
		t.Fatalf("read back %q, %v; want %q\n%q", got, err, value, out)
	}
	again, err := rewrite(out, field, value)
	if err != nil || !bytes.Equal(again, out) {
		t.Fatalf("a second rewrite changed the file (%v):\n%q\n%q", err, out, again)
	}
}

// checkOutside: the bytes between and around the spans are the same in
// both.
func checkOutside(t *testing.T, before, after []byte, oldSpans, newSpans []span) {
	t.Helper()
	if len(oldSpans) != len(newSpans) {
		t.Fatalf("%d values before, %d after", len(oldSpans), len(newSpans))
	}
	oa, na := 0, 0
	for i := range oldSpans {
		if !bytes.Equal(before[oa:oldSpans[i].start], after[na:newSpans[i].start]) {
			t.Fatalf("bytes before value %d changed:\n%q\n%q", i, before[oa:oldSpans[i].start], after[na:newSpans[i].start])
		}
		oa, na = oldSpans[i].end, newSpans[i].end
	}
	if !bytes.Equal(before[oa:], after[na:]) {
		t.Fatalf("bytes after the last value changed:\n%q\n%q", before[oa:], after[na:])
	}
}
