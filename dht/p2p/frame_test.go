package p2p

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ringkv/ringkv/dht"
)

// frame returns uvarint(n) followed by body (which may be shorter than n).
func frame(n uint64, body []byte) []byte {
	b := binary.AppendUvarint(nil, n)
	return append(b, body...)
}

func TestReadFrame(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, 3*growChunk+17)
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    []byte
		wantErr error
	}{
		{"empty stream", nil, 1024, nil, io.EOF},
		{"zero length", frame(0, nil), 1024, []byte{}, nil},
		{"small", frame(5, []byte("hello")), 1024, []byte("hello"), nil},
		{"exactly max", frame(4, []byte("abcd")), 4, []byte("abcd"), nil},
		{"one over max", frame(5, []byte("abcde")), 4, nil, dht.ErrMessageTooLarge},
		{"huge length", frame(1<<62, nil), 1 << 20, nil, dht.ErrMessageTooLarge},
		{"overlong zero varint", bytes.Repeat([]byte{0x80}, 11), 1024, nil, errMalformed},
		{"varint cut", []byte{0x80}, 1024, nil, io.ErrUnexpectedEOF},
		{"body cut", frame(10, []byte("abc")), 1024, nil, io.ErrUnexpectedEOF},
		{"body missing", frame(10, nil), 1024, nil, io.ErrUnexpectedEOF},
		{"large grows", frame(uint64(len(big)), big), 1 << 20, big, nil},
		{"large cut", frame(uint64(len(big)), big[:growChunk+1]), 1 << 20, nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readFrame(bufio.NewReader(bytes.NewReader(tt.in)), tt.max, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(got, tt.want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(tt.want))
			}
			if cap(got) > tt.max {
				t.Fatalf("cap %d over max %d", cap(got), tt.max)
			}
		})
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	buf := make([]byte, 0, 64)
	got, err := readFrame(bufio.NewReader(bytes.NewReader(frame(3, []byte("abc")))), 1024, buf)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &buf[:1][0] {
		t.Fatal("readFrame allocated although the buffer was large enough")
	}
}

func TestReadResponse(t *testing.T) {
	longMsg := bytes.Repeat([]byte{'e'}, maxErrorMessage+1)
	tests := []struct {
		name        string
		in          []byte
		wantStatus  byte
		wantBody    string
		wantStarted bool
		wantErr     error
	}{
		{"nothing", nil, 0, "", false, io.EOF},
		{"ok", append([]byte{statusOK}, frame(2, []byte("hi"))...), statusOK, "hi", true, nil},
		{"error", append([]byte{statusError}, frame(4, []byte("boom"))...), statusError, "boom", true, nil},
		{"status only", []byte{statusOK}, statusOK, "", true, io.ErrUnexpectedEOF},
		{"unknown status", []byte{7, 0}, 7, "", true, errMalformed},
		{"error too long", append([]byte{statusError}, frame(uint64(len(longMsg)), longMsg)...), statusError, "", true, errMalformed},
		{"ok too large", append([]byte{statusOK}, frame(5000, nil)...), statusOK, "", true, dht.ErrMessageTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, started, err := readResponse(bufio.NewReader(bytes.NewReader(tt.in)), 4096, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if status != tt.wantStatus || started != tt.wantStarted || string(body) != tt.wantBody {
				t.Fatalf("got (%d, %q, %v), want (%d, %q, %v)",
					status, body, started, tt.wantStatus, tt.wantBody, tt.wantStarted)
			}
		})
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"small", []byte("payload")},
		{"over bufio size", bytes.Repeat([]byte{1, 2, 3}, bufioSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wire bytes.Buffer
			w := bufio.NewWriter(&wire)
			if err := writeRequest(w, tt.payload); err != nil {
				t.Fatal(err)
			}
			if err := writeResponse(w, statusOK, tt.payload); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(&wire)
			req, err := readFrame(r, 1<<20, nil)
			if err != nil || !bytes.Equal(req, tt.payload) {
				t.Fatalf("request: %v, %d bytes", err, len(req))
			}
			status, body, _, err := readResponse(r, 1<<20, nil)
			if err != nil || status != statusOK || !bytes.Equal(body, tt.payload) {
				t.Fatalf("response: %v, status %d, %d bytes", err, status, len(body))
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want string // "" means: check bounds only
	}{
		{"short", "boom", "boom"},
		{"invalid utf8", "a\xffb", "a\uFFFDb"},
		{"long ascii", strings.Repeat("a", 3000), strings.Repeat("a", maxErrorMessage)},
		{"long multibyte", strings.Repeat("é", 1000), strings.Repeat("é", maxErrorMessage/2)},
		{"cut inside rune", "a" + strings.Repeat("€", 500), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errorText(errors.New(tt.msg))
			if len(got) > maxErrorMessage || !utf8.ValidString(got) {
				t.Fatalf("len %d, valid %v", len(got), utf8.ValidString(got))
			}
			if tt.want != "" && got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if tt.want == "" && len(got) < maxErrorMessage-utf8.UTFMax {
				t.Fatalf("cut too short: %d bytes", len(got))
			}
		})
	}
}

// fuzzMax is the frame limit in the fuzz targets: small, so that the
// allocation bound is exercised by short inputs.
const fuzzMax = 1 << 12

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add(frame(0, nil))
	f.Add(frame(5, []byte("hello")))
	f.Add(frame(fuzzMax, bytes.Repeat([]byte{'a'}, fuzzMax)))
	f.Add(frame(fuzzMax+1, []byte("x")))
	f.Add(frame(1<<63, nil))
	f.Add(bytes.Repeat([]byte{0xff}, 12))
	f.Add(append(frame(2, []byte("ab")), frame(3, []byte("cde"))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		for range 64 {
			b, err := readFrame(r, fuzzMax, buf)
			if err != nil {
				return
			}
			if len(b) > fuzzMax || cap(b) > max(fuzzMax, cap(buf)) {
				t.Fatalf("frame len %d cap %d over max %d", len(b), cap(b), fuzzMax)
			}
			buf = keep(b)
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	f.Add([]byte{})
	f.Add(append([]byte{statusOK}, frame(2, []byte("hi"))...))
	f.Add(append([]byte{statusError}, frame(4, []byte("boom"))...))
	f.Add(append([]byte{statusError}, frame(maxErrorMessage+1, nil)...))
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		status, body, started, err := readResponse(bufio.NewReader(bytes.NewReader(data)), fuzzMax, nil)
		if err != nil {
			if started != (len(data) > 0) {
				t.Fatalf("started = %v with %d input bytes", started, len(data))
			}
			return
		}
		if status == statusError && len(body) > maxErrorMessage {
			t.Fatalf("error message of %d bytes accepted", len(body))
		}
		if len(body) > fuzzMax || cap(body) > fuzzMax {
			t.Fatalf("body len %d cap %d over max", len(body), cap(body))
		}
	})
}
