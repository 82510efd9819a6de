package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/ringkv/ringkv/dht"
)

// The frame codec. One stream carries any number of exchanges, one after the
// other:
//
//	request  = uvarint(len) payload            payload: protobuf, len <= MaxMessageSize
//	response = status uvarint(len) payload     status 0: payload is the protobuf response
//	                                           status 1: payload is a UTF-8 error message, len <= 1 KiB
//
// Readers check a length against the limit as soon as its varint is read,
// before any allocation, and grow buffers for large frames only as the bytes
// arrive, so a peer that announces a large frame and sends little of it
// costs little memory.

// Response status bytes.
const (
	statusOK    byte = 0
	statusError byte = 1
)

const (
	// maxErrorMessage bounds the error text of a status-1 response, bytes.
	maxErrorMessage = 1 << 10
	// growChunk is the first allocation for a frame larger than the buffer
	// at hand; larger frames grow by doubling as their bytes arrive.
	growChunk = 64 << 10
	// keepBufferCap: buffers up to this capacity are kept for reuse (per
	// stream or in a pool); larger ones are left to the collector so an
	// idle stream does not pin MaxMessageSize bytes.
	keepBufferCap = 64 << 10
	// bufioSize is the size of the bufio reader and writer of each stream.
	bufioSize = 4 << 10
)

// errMalformed: bytes that are not a frame (overlong varint, unknown status,
// over-long error message).
var errMalformed = errors.New("p2p: malformed frame")

// readLength reads a frame's uvarint length. It fails with an error wrapping
// dht.ErrMessageTooLarge as soon as the value exceeds max, with io.EOF when
// the reader is at a clean end before the first byte, and with
// io.ErrUnexpectedEOF when it ends inside the varint.
func readLength(r io.ByteReader, max int) (int, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		x |= uint64(b&0x7f) << (7 * i)
		if x > uint64(max) {
			return 0, fmt.Errorf("%w: frame length over %d bytes", dht.ErrMessageTooLarge, max)
		}
		if b < 0x80 {
			return int(x), nil
		}
	}
	return 0, fmt.Errorf("%w: length varint longer than %d bytes", errMalformed, binary.MaxVarintLen64)
}

// readFrame reads one length-prefixed frame of at most max bytes. It returns
// buf[:n] when buf is large enough, else a new slice whose capacity never
// exceeds n. A clean end of stream before the frame is io.EOF; an end
// inside it is io.ErrUnexpectedEOF.
func readFrame(r *bufio.Reader, max int, buf []byte) ([]byte, error) {
	n, err := readLength(r, max)
	if err != nil {
		return nil, err
	}
	var b []byte
	switch {
	case n <= cap(buf):
		b = buf[:n]
	case n <= growChunk:
		b = make([]byte, n)
	default:
		return readLarge(r, n)
	}
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, noEOF(err)
	}
	return b, nil
}

// readLarge reads an n-byte payload, doubling its buffer as bytes arrive.
func readLarge(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, 0, growChunk)
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(n, 2*cap(b)))
			copy(nb, b)
			b = nb
		}
		end := min(n, cap(b))
		m, err := io.ReadFull(r, b[len(b):end])
		b = b[:len(b)+m]
		if err != nil {
			return nil, noEOF(err)
		}
	}
	return b, nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: after a length prefix the
// stream must not end.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readResponse reads one response: its status and payload. started reports
// whether at least one byte of the response arrived, which tells a stale
// pooled stream (closed by the peer before answering) from a failed answer.
func readResponse(r *bufio.Reader, max int, buf []byte) (status byte, body []byte, started bool, err error) {
	status, err = r.ReadByte()
	if err != nil {
		return 0, nil, false, err
	}
	limit := max
	switch status {
	case statusOK:
	case statusError:
		limit = maxErrorMessage
	default:
		return status, nil, true, fmt.Errorf("%w: unknown status %d", errMalformed, status)
	}
	body, err = readFrame(r, limit, buf)
	if err != nil {
		if status == statusError && errors.Is(err, dht.ErrMessageTooLarge) {
			err = fmt.Errorf("%w: error message over %d bytes", errMalformed, maxErrorMessage)
		}
		return status, nil, true, noEOF(err)
	}
	return status, body, true, nil
}

// writeFrame buffers uvarint(len(payload)) and payload. The length is
// encoded straight into the writer's free buffer space.
func writeFrame(w *bufio.Writer, payload []byte) error {
	if w.Available() < binary.MaxVarintLen64 {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if _, err := w.Write(binary.AppendUvarint(w.AvailableBuffer(), uint64(len(payload)))); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// writeRequest writes one request frame and flushes it.
func writeRequest(w *bufio.Writer, payload []byte) error {
	if err := writeFrame(w, payload); err != nil {
		return err
	}
	return w.Flush()
}

// writeResponse writes one response (status, frame) and flushes it.
func writeResponse(w *bufio.Writer, status byte, payload []byte) error {
	if err := w.WriteByte(status); err != nil {
		return err
	}
	if err := writeFrame(w, payload); err != nil {
		return err
	}
	return w.Flush()
}

// errorText renders err for a status-1 response: valid UTF-8, cut at a rune
// boundary to at most maxErrorMessage bytes.
func errorText(err error) string {
	msg := strings.ToValidUTF8(err.Error(), "\uFFFD")
	if len(msg) <= maxErrorMessage {
		return msg
	}
	cut := maxErrorMessage
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}

// marshal encodes m into a pooled buffer, refusing messages over max before
// encoding them. The caller returns the buffer with putPayload.
func marshal(m proto.Message, max int) (*[]byte, error) {
	size := proto.Size(m)
	if size > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", dht.ErrMessageTooLarge, size, max)
	}
	bp := payloadPool.Get().(*[]byte)
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*bp)[:0], m)
	if err != nil {
		putPayload(bp)
		return nil, err
	}
	*bp = b
	return bp, nil
}

var payloadPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func putPayload(bp *[]byte) {
	if cap(*bp) <= keepBufferCap {
		payloadPool.Put(bp)
	}
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufioSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufioSize) }}
)

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

func getWriter(w io.Writer) *bufio.Writer {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writerPool.Put(bw)
}

// keep returns b emptied for reuse, or nil when it is too large to keep.
func keep(b []byte) []byte {
	if cap(b) > keepBufferCap {
		return nil
	}
	return b[:0]
}
