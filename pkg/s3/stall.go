package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// DefaultStallTimeout is how long a transfer may make no progress before it is cancelled and
// retried: a dead or wedged endpoint must never hang a job.
const DefaultStallTimeout = 60 * time.Second

// errStalled marks a request cancelled by the watchdog.
var errStalled = errors.New("stalled")

// watchdog derives a context that is cancelled when progress is not called for d.
type watchdog struct {
	timer *time.Timer
	d     time.Duration
}

func newWatchdog(ctx context.Context, d time.Duration) (context.Context, *watchdog, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{d: d}
	w.timer = time.AfterFunc(d, func() { cancel(fmt.Errorf("%w: no progress for %s", errStalled, d)) })
	return ctx, w, func() { w.timer.Stop(); cancel(context.Canceled) }
}

func (w *watchdog) progress() { w.timer.Reset(w.d) }

// stallCause returns the watchdog's error when it cancelled ctx, else err.
func stallCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

// progressReader reports every read to a watchdog. It keeps io.Seeker, which the SDK needs to
// sign and retry request bodies.
type progressReader struct {
	r io.Reader
	w *watchdog
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.w.progress()
	}
	return n, err
}

func (p *progressReader) Seek(off int64, whence int) (int64, error) {
	s, ok := p.r.(io.Seeker)
	if !ok {
		return 0, errors.New("body is not seekable")
	}
	return s.Seek(off, whence)
}

// stallAttempts is how often a request that stalled is tried.
const stallAttempts = 3

// withStallAttempts runs a request under a watchdog, up to stallAttempts times while it stalls.
func (s *Store) withStallAttempts(ctx context.Context, request func(ctx context.Context, w *watchdog) error) error {
	for attempt := 1; ; attempt++ {
		wctx, w, stop := newWatchdog(ctx, s.opts.StallTimeout)
		err := request(wctx, w)
		if err != nil {
			err = stallCause(wctx, err)
		}
		stop()
		if !errors.Is(err, errStalled) || attempt == stallAttempts || ctx.Err() != nil {
			return err
		}
	}
}
