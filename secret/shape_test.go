package secret

import "testing"

func TestShape(t *testing.T) {
	hex1, hex2 := New("0f1e2d3c4b5a69788796a5b4c3d2e1f0"), "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
	if hex1.Shape() != ShapeOf(hex2) {
		t.Errorf("two hex keys of one length differ: %+v %+v", hex1.Shape(), ShapeOf(hex2))
	}
	for _, other := range []string{
		"0f1e2d3c4b5a69788796a5b4c3d2e1f",  // shorter
		"0f1e2d3c4b5a69788796a5b4c3d2e1fg", // a letter beyond f
		"0F1E2D3C4B5A69788796A5B4C3D2E1F0", // upper case
		"actionnetwork-main-integration-x", // an id
		"0f1e2d3c 4b5a69788796a5b4c3d2e1f0"[:32],
	} {
		if hex1.Shape() == ShapeOf(other) {
			t.Errorf("%q has the shape of a hex key", other)
		}
	}
	if sh := ShapeOf("aZ9-_.+/=~"); sh.Classes != ClassLower|ClassUpper|ClassDigit|ClassNonHex|ClassDash|ClassUnderscore|ClassDot|ClassBase64|ClassEquals|ClassOther || sh.Len != 10 {
		t.Errorf("classes %b", sh.Classes)
	}
}
