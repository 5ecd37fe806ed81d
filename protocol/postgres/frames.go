package postgres

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxStartupPacket is MAX_STARTUP_PACKET_LENGTH in PostgreSQL's
// src/include/libpq/pqcomm.h.
const maxStartupPacket = 10000

// retainedFrameBuffer is the largest frame buffer kept between frames; a
// larger one (one huge value) is released after use so that a session's
// memory falls back once the big message has passed.
const retainedFrameBuffer = 1 << 20

// errFrameTooLarge is wrapped when a message exceeds the configured limit.
var errFrameTooLarge = errors.New("message exceeds the size limit")

// frameReader reads typed protocol messages (Byte1 type, Int32 length,
// body; PostgreSQL docs, "Message Formats") one at a time. The body it
// returns is valid until the next call.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
	max int // largest body accepted; 0 = no limit
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 32*1024), max: max}
}

// next returns the next message's type and body.
func (fr *frameReader) next() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 {
		return 0, nil, fmt.Errorf("invalid message length %d", n)
	}
	n -= 4
	if fr.max > 0 && n > int64(fr.max) {
		return 0, nil, fmt.Errorf("%w: a %q message of %d bytes (limit %d)", errFrameTooLarge, hdr[0], n, fr.max)
	}
	if len(fr.buf) > retainedFrameBuffer && n <= retainedFrameBuffer {
		fr.buf = nil
	}
	if int64(cap(fr.buf)) < n {
		fr.buf = make([]byte, n)
	}
	body := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// buffered reports whether the next whole message is already buffered, so
// the caller knows whether the next read may block.
func (fr *frameReader) buffered() bool {
	n := fr.r.Buffered()
	if n < 5 {
		return false
	}
	hdr, err := fr.r.Peek(5)
	if err != nil {
		return false
	}
	return int64(n) >= 1+int64(binary.BigEndian.Uint32(hdr[1:]))
}

// readStartupPacket reads one untyped startup-phase packet (SSLRequest,
// GSSENCRequest, CancelRequest or StartupMessage) straight from r with no
// read-ahead, so that nothing sent before a TLS handshake can be mistaken
// for data sent after it (the CVE-2021-23214 class of injection).
func readStartupPacket(r io.Reader) (pgproto3.FrontendMessage, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:])))
	if n < 8 || n > maxStartupPacket {
		return nil, fmt.Errorf("invalid startup packet length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("truncated startup packet: %w", err)
	}
	return decodeStartupPacket(body)
}

func decodeStartupPacket(body []byte) (pgproto3.FrontendMessage, error) {
	code := binary.BigEndian.Uint32(body)
	var msg pgproto3.FrontendMessage
	switch code {
	case 80877103:
		msg = &pgproto3.SSLRequest{}
	case 80877104:
		msg = &pgproto3.GSSEncRequest{}
	case 80877102:
		msg = &pgproto3.CancelRequest{}
	case pgproto3.ProtocolVersion30, pgproto3.ProtocolVersion32:
		msg = &pgproto3.StartupMessage{}
	default:
		return nil, fmt.Errorf("unsupported startup packet code %d (only protocol 3.0 and 3.2 are spoken)", code)
	}
	if err := msg.Decode(body); err != nil {
		return nil, fmt.Errorf("malformed startup packet: %w", err)
	}
	return msg, nil
}

// decodeFrontend decodes a client message of type typ. Only messages valid
// after the startup phase are accepted.
func decodeFrontend(typ byte, body []byte) (pgproto3.FrontendMessage, error) {
	var msg pgproto3.FrontendMessage
	switch typ {
	case 'Q':
		msg = &pgproto3.Query{}
	case 'P':
		msg = &pgproto3.Parse{}
	case 'B':
		msg = &pgproto3.Bind{}
	case 'D':
		msg = &pgproto3.Describe{}
	case 'E':
		msg = &pgproto3.Execute{}
	case 'C':
		msg = &pgproto3.Close{}
	case 'S':
		msg = &pgproto3.Sync{}
	case 'H':
		msg = &pgproto3.Flush{}
	case 'X':
		msg = &pgproto3.Terminate{}
	case 'd':
		msg = &pgproto3.CopyData{}
	case 'c':
		msg = &pgproto3.CopyDone{}
	case 'f':
		msg = &pgproto3.CopyFail{}
	case 'F':
		msg = &pgproto3.FunctionCall{}
	case 'p':
		msg = &pgproto3.PasswordMessage{}
	default:
		return nil, fmt.Errorf("unknown message type %q", typ)
	}
	if err := msg.Decode(body); err != nil {
		return nil, fmt.Errorf("malformed %q message: %w", typ, err)
	}
	return msg, nil
}

// writer buffers outgoing messages for one side of the relay. It is safe
// for concurrent use: the relay goroutine that owns a direction writes
// through it, and drain or terminate may inject a last message.
type writer struct {
	mu   sync.Mutex
	conn net.Conn
	buf  []byte
	err  error
	// timeout, when positive, bounds how long the peer may take nothing
	// written to it (a peer that reads slowly but steadily is not cut
	// off).
	timeout time.Duration
}

// errStalled is wrapped by a write of which the peer took nothing for the
// writer's timeout.
var errStalled = errors.New("stopped reading")

// write writes b whole. With a timeout, each wait for the peer gets a
// fresh deadline as long as the peer took some of b before the last one
// passed: only a peer that takes nothing for a whole timeout fails it (so
// one that stops reading is noticed between one and two timeouts later).
func (w *writer) write(b []byte) error {
	if w.timeout <= 0 {
		_, err := w.conn.Write(b)
		return err
	}
	for {
		if err := w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
			return err
		}
		n, err := w.conn.Write(b)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: nothing written to it was taken for %s: %w", errStalled, w.timeout, err)
		}
		b = b[n:]
	}
}

// setTimeout bounds every later write (zero: no bound).
func (w *writer) setTimeout(d time.Duration) {
	w.mu.Lock()
	w.timeout = d
	w.mu.Unlock()
}

// maxPending is how much is buffered before a write is forced, so a large
// result never accumulates in memory.
const maxPending = 64 * 1024

func newWriter(c net.Conn) *writer { return &writer{conn: c, buf: make([]byte, 0, 16*1024)} }

// raw appends an already framed message (type, length, body).
func (w *writer) raw(typ byte, body []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.buf = append(w.buf, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(w.buf[len(w.buf)-4:], uint32(len(body)+4))
	w.buf = append(w.buf, body...)
	if len(w.buf) >= maxPending {
		return w.flushLocked()
	}
	return nil
}

// msg appends an encoded message.
func (w *writer) msg(m interface{ Encode([]byte) ([]byte, error) }) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	b, err := m.Encode(w.buf)
	if err != nil {
		return err
	}
	w.buf = b
	if len(w.buf) >= maxPending {
		return w.flushLocked()
	}
	return nil
}

func (w *writer) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *writer) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	err := w.write(w.buf)
	if cap(w.buf) > 4*maxPending {
		w.buf = make([]byte, 0, 16*1024)
	} else {
		w.buf = w.buf[:0]
	}
	if err != nil {
		w.err = err
	}
	return err
}
