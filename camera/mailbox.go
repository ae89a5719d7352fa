package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"context"
	"sync"
)

// Mailbox holds the latest frame. Put never blocks: a frame nobody took
// yet is replaced (and counted as dropped). Frames move between the
// producer, the mailbox and the consumer by swapping buffers, so steady
// state capture allocates nothing.
type Mailbox struct {
	mu      sync.Mutex
	slot    frame.Frame
	full    bool
	closed  bool
	ready   chan struct{}
	dropped uint64
	put     uint64
}

// NewMailbox returns an empty mailbox.
func NewMailbox() *Mailbox {
	return &Mailbox{ready: make(chan struct{}, 1)}
}

// Put stores f as the latest frame. On return f holds a recycled buffer
// whose contents are undefined.
func (m *Mailbox) Put(f *frame.Frame) {
	m.mu.Lock()
	if m.full {
		m.dropped++
	}
	m.slot, *f = *f, m.slot
	m.full = true
	m.put++
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

// Take waits for a frame and swaps it into dst (dst's old buffer is
// recycled). It returns ctx.Err() when ctx ends and ErrClosed once the
// mailbox is closed and empty.
func (m *Mailbox) Take(ctx context.Context, dst *frame.Frame) error {
	for {
		m.mu.Lock()
		if m.full {
			m.slot, *dst = *dst, m.slot
			m.full = false
			m.mu.Unlock()
			return nil
		}
		closed := m.closed
		m.mu.Unlock()
		if closed {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.ready:
		}
	}
}

// Close wakes a waiting Take; frames already in the mailbox can still be
// taken.
func (m *Mailbox) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

// Stats returns how many frames were put and how many were replaced before
// anyone took them.
func (m *Mailbox) Stats() (put, dropped uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.put, m.dropped
}

// Ready is signalled after a Put (and on Close). Use it with TryTake to
// wait for frames in a select.
func (m *Mailbox) Ready() <-chan struct{} { return m.ready }

// TryTake swaps the latest frame into dst if there is one.
func (m *Mailbox) TryTake(dst *frame.Frame) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.full {
		return false
	}
	m.slot, *dst = *dst, m.slot
	m.full = false
	return true
}
