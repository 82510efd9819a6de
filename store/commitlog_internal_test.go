package store

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
)

func sampleMutations() []mutation {
	return []mutation{
		{key: []byte("d/a"), value: []byte("one")},
		{key: []byte("d/b"), del: true},
		{key: []byte{}, value: []byte{}}, // empty key, empty value: still a set
		{key: []byte("d/c"), value: bytes.Repeat([]byte{0xff}, 300)},
	}
}

func sameMutations(t *testing.T, got, want []mutation) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d mutations, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !bytes.Equal(g.key, w.key) || g.del != w.del || !bytes.Equal(g.value, w.value) || (!g.del && g.value == nil) {
			t.Fatalf("mutation %d: got {%q del=%v %q}, want {%q del=%v %q}", i, g.key, g.del, g.value, w.key, w.del, w.value)
		}
	}
}

func TestMutationsRoundTrip(t *testing.T) {
	want := sampleMutations()
	got, err := decodeMutations(encodeMutations(nil, want))
	if err != nil {
		t.Fatal(err)
	}
	sameMutations(t, got, want)
}

func TestDecodeMutationsRejectsMalformed(t *testing.T) {
	good := encodeMutations(nil, sampleMutations())
	cases := map[string][]byte{
		"empty":          {},
		"cut short":      good[:len(good)-1],
		"trailing bytes": append(bytes.Clone(good), 0),
		"bad op":         {1, 2, 0},
		"count too big":  binary.AppendUvarint(nil, 1<<40),
		"key too long":   {1, 0, 9, 'k'},
	}
	for name, p := range cases {
		if _, err := decodeMutations(p); err == nil {
			t.Errorf("%s: decodeMutations(%x) accepted it", name, p)
		}
	}
}

// writeSegment writes records, each holding muts, as segment seq of dir.
func writeSegment(t *testing.T, dir string, seq uint64, records int, muts []mutation) string {
	t.Helper()
	var file []byte
	for range records {
		payload := encodeMutations(nil, muts)
		file = binary.LittleEndian.AppendUint32(file, uint32(len(payload)))
		file = binary.LittleEndian.AppendUint32(file, recordCRC(seq, payload))
		file = append(file, payload...)
	}
	path := segmentPath(dir, seq)
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func countReplay(t *testing.T, path string, seq uint64) int {
	t.Helper()
	n, err := replaySegment(path, seq, func(got []mutation) error {
		sameMutations(t, got, sampleMutations())
		return nil
	})
	if err != nil {
		t.Fatalf("replaySegment: %v", err)
	}
	return n
}

func TestReplaySegment(t *testing.T) {
	dir := t.TempDir()
	path := writeSegment(t, dir, 7, 3, sampleMutations())
	if n := countReplay(t, path, 7); n != 3 {
		t.Fatalf("replayed %d records, want 3", n)
	}
	// A recycled segment: the same bytes under another sequence number are
	// records of an earlier life, and fail their CRC.
	if n := countReplay(t, path, 8); n != 0 {
		t.Fatalf("replayed %d stale records, want 0", n)
	}
	// A torn last record ends the replay before it.
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, data[:len(data)-5], 0o600); err != nil {
		t.Fatal(err)
	}
	if n := countReplay(t, path, 7); n != 2 {
		t.Fatalf("replayed %d records of a torn segment, want 2", n)
	}
	// A flipped bit in the second record ends the replay before it.
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if n := countReplay(t, path, 7); n != 1 {
		t.Fatalf("replayed %d records of a corrupt segment, want 1", n)
	}
}

// FuzzDecodeMutations: any payload is either rejected or decodes to
// mutations that survive an encode and decode unchanged; it never panics.
func FuzzDecodeMutations(f *testing.F) {
	f.Add(encodeMutations(nil, sampleMutations()))
	f.Add(encodeMutations(nil, nil))
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		muts, err := decodeMutations(p)
		if err != nil {
			return
		}
		again, err := decodeMutations(encodeMutations(nil, muts))
		if err != nil {
			t.Fatalf("re-encoded mutations of %x do not decode: %v", p, err)
		}
		sameMutations(t, again, muts)
	})
}
