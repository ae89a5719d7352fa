package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// argon2id parameters of new hashes: 19 MiB, 2 passes, 1 lane (the
// smallest of the common recommendations for argon2id, which a Raspberry
// Pi checks in a fraction of a second).
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Bounds on the parameters of hashes read from the configuration, so that
// a hash cannot make every login take minutes or gigabytes.
const (
	maxArgonMemory  = 256 * 1024
	maxArgonTime    = 16
	maxArgonThreads = 16
)

// HashPassword makes an argon2id hash in the PHC string format.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("the password is empty")
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// hash is a parsed password hash.
type hash struct {
	bcrypt              []byte
	salt, key           []byte
	memory, time, lanes uint32
}

func parseHash(s string) (*hash, error) {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("bcrypt: %w", err)
		}
		if cost > 14 {
			return nil, fmt.Errorf("bcrypt cost %d is over 14", cost)
		}
		return &hash{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		parts := strings.Split(s, "$")
		if len(parts) != 6 || parts[2] != "v="+strconv.Itoa(argon2.Version) {
			return nil, errors.New("argon2id: want $argon2id$v=19$m=M,t=T,p=P$salt$hash")
		}
		h := &hash{}
		var m, t, p uint64
		for _, kv := range strings.Split(parts[3], ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("argon2id: parameter %q", kv)
			}
			switch k {
			case "m":
				m = n
			case "t":
				t = n
			case "p":
				p = n
			default:
				return nil, fmt.Errorf("argon2id: unknown parameter %q", k)
			}
		}
		switch {
		case m < 8*1024 || m > maxArgonMemory:
			return nil, fmt.Errorf("argon2id: memory %d KiB is not between 8192 and %d", m, maxArgonMemory)
		case t < 1 || t > maxArgonTime:
			return nil, fmt.Errorf("argon2id: %d passes is not between 1 and %d", t, maxArgonTime)
		case p < 1 || p > maxArgonThreads:
			return nil, fmt.Errorf("argon2id: %d lanes is not between 1 and %d", p, maxArgonThreads)
		}
		h.memory, h.time, h.lanes = uint32(m), uint32(t), uint32(p)
		var err error
		if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
			return nil, errors.New("argon2id: the salt is not base64 of at least 8 bytes")
		}
		if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
			return nil, errors.New("argon2id: the hash is not base64 of 16 to 64 bytes")
		}
		return h, nil
	}
	return nil, errors.New("not an argon2id ($argon2id$) or bcrypt ($2b$) hash")
}

// verify says whether password matches, in time that does not depend on
// where it differs.
func (h *hash) verify(password string) bool {
	if h.bcrypt != nil {
		return bcrypt.CompareHashAndPassword(h.bcrypt, []byte(password)) == nil
	}
	key := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, uint8(h.lanes), uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}

// session is a browser's session: who (empty for anonymous use on
// loopback) and its CSRF token.
type session struct {
	user    string
	csrf    string
	expires time.Time
	flash   string // a message for the next page (without script)
}

// sessions keeps sessions in memory, by the SHA-256 of their id (a
// restart logs everyone out).
type sessions struct {
	mu  sync.Mutex
	ttl time.Duration
	now func() time.Time
	m   map[[32]byte]*session
}

// maxSessions bounds the sessions kept; the oldest go first.
const maxSessions = 1024

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, m: map[[32]byte]*session{}}
}

func token() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns its id.
func (s *sessions) create(user string) (string, *session) {
	id := token()
	ss := &session{user: user, csrf: token(), expires: s.now().Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	for len(s.m) >= maxSessions {
		var oldest [32]byte
		var at time.Time
		for k, v := range s.m {
			if at.IsZero() || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = ss
	return id, ss
}

// get returns a live session and extends it.
func (s *sessions) get(id string) (*session, bool) {
	if id == "" || len(id) > 128 {
		return nil, false
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[k]
	if !ok {
		return nil, false
	}
	if s.now().After(ss.expires) {
		delete(s.m, k)
		return nil, false
	}
	ss.expires = s.now().Add(s.ttl)
	c := *ss
	return &c, true
}

// setFlash leaves a message for the session's next page.
func (s *sessions) setFlash(id, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.m[sha256.Sum256([]byte(id))]; ok {
		ss.flash = msg
	}
}

// takeFlash returns and clears the session's message.
func (s *sessions) takeFlash(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[sha256.Sum256([]byte(id))]
	if !ok {
		return ""
	}
	msg := ss.flash
	ss.flash = ""
	return msg
}

func constantEq(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func (s *sessions) drop(id string) {
	s.mu.Lock()
	delete(s.m, sha256.Sum256([]byte(id)))
	s.mu.Unlock()
}

// throttle slows down password guessing: after 5 failures from one
// address, each further try waits for a delay that doubles up to 15
// minutes; a success clears it.
type throttle struct {
	mu   sync.Mutex
	now  func() time.Time
	fail map[string]*failures
}

type failures struct {
	n     int
	until time.Time
}

func newThrottle(now func() time.Time) *throttle {
	return &throttle{now: now, fail: map[string]*failures{}}
}

// wait says how long a client must wait before its next try (0: now).
func (t *throttle) wait(client string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.fail[client]
	if f == nil {
		return 0
	}
	if d := f.until.Sub(t.now()); d > 0 {
		return d
	}
	return 0
}

func (t *throttle) failed(client string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.fail) > 10000 {
		clear(t.fail) // a flood of addresses: start over rather than grow
	}
	f := t.fail[client]
	if f == nil {
		f = &failures{}
		t.fail[client] = f
	}
	f.n++
	if f.n >= 5 {
		d := min(time.Second<<min(f.n-5, 10), 15*time.Minute)
		f.until = t.now().Add(d)
	}
}

func (t *throttle) succeeded(client string) {
	t.mu.Lock()
	delete(t.fail, client)
	t.mu.Unlock()
}
