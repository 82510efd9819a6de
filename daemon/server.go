package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// The API server. fasthttp serves the API's connections: it answers the
// key-value endpoints (/v1/kv/{key}, kvapi.go) itself, and hands every
// other request to the net/http handler of routes through
// fasthttpadaptor. The key-value endpoints carry nearly all of a
// daemon's API traffic, and for them net/http's server spent a quarter
// of the coordinating daemon's CPU at put -c 50 outside the handler
// (reading and parsing the request, a goroutine per request to watch the
// connection, writing the answer): fasthttp reuses its request state and
// needs no goroutine per request.
//
// Requests run under the daemon's context, not one per request: as with
// net/http's Shutdown, a request in flight when the daemon stops runs on
// until it ends or the shutdown grace runs out, when the daemon's context
// is cancelled. (fasthttp's own request context is cancelled as soon as a
// shutdown begins.) A client that goes away does not cancel its request.

const (
	// apiReadTimeout bounds reading one request, body included.
	apiReadTimeout = 10 * time.Second
	// apiIdleTimeout closes a keep-alive connection idle this long.
	apiIdleTimeout = 2 * time.Minute
)

// newAPIServer builds the API server. Request bodies are read whole
// before a handler runs, up to twice max_value_size: a PUT value over
// max_value_size is refused by its handler, a larger body before it is
// read (both 413).
func (d *Daemon) newAPIServer() *fasthttp.Server {
	routes := d.routes()
	slow := fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		routes.ServeHTTP(w, r.WithContext(d.ctx))
	}))
	return &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if p := ctx.URI().PathOriginal(); bytes.HasPrefix(p, []byte(kvPrefix)) {
				d.serveKV(ctx, p[len(kvPrefix):])
				return
			}
			slow(ctx)
		},
		ErrorHandler:          apiErrorHandler(d.cfg.MaxValueSize),
		ReadTimeout:           apiReadTimeout,
		IdleTimeout:           apiIdleTimeout,
		MaxRequestBodySize:    2 * d.cfg.MaxValueSize,
		NoDefaultServerHeader: true,
		Logger:                fastLogger{d.log},
	}
}

// apiErrorHandler answers a request fasthttp could not read. An HTTP
// client may open a connection it never uses (Go's Transport dials one for
// a request that another connection then serves, and parks it idle): when
// the read timeout ends such a connection, it is closed without an answer,
// as net/http's server does, since an answer on it would reach the client
// as an unsolicited response (net/http logs one for each). fasthttp hands
// over the connection's own error, unwrapped, when nothing of a request
// was read, and also when a request's body stops short, for it discards
// the request then: those connections too are closed without an answer.
// A header cut short by the timeout gets 408, anything unparsable 400.
func apiErrorHandler(maxValueSize int) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		_, connErr := err.(*net.OpError)
		switch {
		case connErr:
			ctx.Conn().Close() // the answer fasthttp writes next goes nowhere
		case errors.Is(err, fasthttp.ErrBodyTooLarge):
			fastError(ctx, http.StatusRequestEntityTooLarge, "the request body is over the %d-byte limit (max_value_size): store a smaller value", maxValueSize)
		case errors.Is(err, os.ErrDeadlineExceeded):
			fastError(ctx, http.StatusRequestTimeout, "the request did not arrive whole within %v: send it again", apiReadTimeout)
		default:
			fastError(ctx, http.StatusBadRequest, "malformed request: %v", err)
		}
	}
}

// fastLogger logs fasthttp's messages, which are about remote input, at
// debug.
type fastLogger struct{ l *slog.Logger }

func (f fastLogger) Printf(format string, args ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug(fmt.Sprintf(format, args...), "component", "api")
	}
}
