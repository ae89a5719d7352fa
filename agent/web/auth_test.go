package web

import (
	"strings"
	"testing"
	"time"
)

func FuzzParseHash(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$2b$10$abcdefghijklmnopqrstuu5Uz0iPVVm8fTxRz1VQ7hO8F5nJ4tGoC")
	f.Add("$argon2id$v=19$m=1,t=1,p=1$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseHash(s)
		if err != nil {
			return
		}
		if h.bcrypt == nil && (h.memory > maxArgonMemory || h.time > maxArgonTime || h.lanes > maxArgonThreads || len(h.key) < 16) {
			t.Fatalf("accepted %q with costs %d KiB, %d passes, %d lanes", s, h.memory, h.time, h.lanes)
		}
	})
}

func TestSessions(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s := newSessions(time.Hour, clock)
	id, ss := s.create("ann")
	if got, ok := s.get(id); !ok || got.user != "ann" || got.csrf != ss.csrf || len(got.csrf) < 40 {
		t.Fatalf("session %+v %v", got, ok)
	}
	if _, ok := s.get(id + "x"); ok {
		t.Error("another id finds the session")
	}
	now = now.Add(59 * time.Minute)
	if _, ok := s.get(id); !ok {
		t.Error("a session used within its ttl expired")
	}
	now = now.Add(61 * time.Minute)
	if _, ok := s.get(id); ok {
		t.Error("a session idle beyond its ttl is still valid")
	}
	for range maxSessions + 10 {
		s.create("")
	}
	if len(s.m) > maxSessions {
		t.Errorf("%d sessions kept, bound %d", len(s.m), maxSessions)
	}
	if _, ok := s.get(strings.Repeat("a", 500)); ok {
		t.Error("a huge id was looked up")
	}
}
