package broker

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Passwords are kept as mosquitto keeps them: "$7$" hashes, PBKDF2 with
// HMAC-SHA512 over a random salt, written $7$ITERATIONS$SALT$HASH (salt
// and hash in base64). So one password file serves the embedded broker
// and a mosquitto broker, and mosquitto_passwd or `whisker mqtt passwd`
// can make it.

// DefaultIterations is the PBKDF2 iteration count HashPassword uses by
// default; mosquitto_passwd uses 101, which is weak against a stolen file.
const DefaultIterations = 100_000

// WeakIterations: a hash with fewer iterations is accepted with a warning.
const WeakIterations = 10_000

const (
	saltLen = 12
	hashLen = 64
	// maxIterations bounds the work one login can ask for.
	maxIterations = 10_000_000
	// maxPasswordFile bounds the password file read.
	maxPasswordFile = 1 << 20
)

// HashPassword hashes a password with a fresh salt.
func HashPassword(password string, iterations int) (string, error) {
	if iterations < 1 || iterations > maxIterations {
		return "", fmt.Errorf("iterations %d: want 1 to %d", iterations, maxIterations)
	}
	if password == "" {
		return "", errors.New("empty password")
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return hashWith(password, salt, iterations)
}

func hashWith(password string, salt []byte, iterations int) (string, error) {
	k, err := pbkdf2.Key(sha512.New, password, salt, iterations, hashLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$7$%d$%s$%s", iterations, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(k)), nil
}

// hash is a parsed "$7$" hash.
type hash struct {
	iterations int
	salt, sum  []byte
}

func parseHash(s string) (hash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "7" {
		return hash{}, errors.New(`not a "$7$" password hash (PBKDF2-SHA512, as mosquitto_passwd and whisker mqtt passwd write)`)
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n < 1 || n > maxIterations {
		return hash{}, fmt.Errorf("password hash has iteration count %q: want 1 to %d", parts[2], maxIterations)
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[3])
	sum, err2 := base64.StdEncoding.DecodeString(parts[4])
	if err1 != nil || err2 != nil || len(salt) == 0 || len(salt) > 64 || len(sum) != hashLen {
		return hash{}, errors.New("password hash has a malformed salt or hash")
	}
	return hash{iterations: n, salt: salt, sum: sum}, nil
}

// check says whether password matches, in time that does not depend on
// where it differs.
func (h hash) check(password string) bool {
	k, err := pbkdf2.Key(sha512.New, password, h.salt, h.iterations, hashLen)
	return err == nil && subtle.ConstantTimeCompare(k, h.sum) == 1
}

// ReadPasswordFile reads a mosquitto password file: one "name:hash" a
// line; blank lines and lines starting with '#' are skipped. A line that
// is not a user and a "$7$" hash is an error naming the line.
func ReadPasswordFile(path string) (map[string]string, error) {
	// Non-blocking, so that a FIFO in its place fails instead of waiting.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > maxPasswordFile {
		return nil, fmt.Errorf("%s: not a password file (a regular file of at most %d bytes)", path, maxPasswordFile)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	users := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, h, ok := strings.Cut(line, ":")
		if !ok || !validUserName(name) {
			return nil, fmt.Errorf("%s:%d: not a \"name:hash\" line with a user name of 1-64 letters, digits, '-', '_' or '.'", path, n)
		}
		if _, err := parseHash(h); err != nil {
			return nil, fmt.Errorf("%s:%d: user %s: %w", path, n, name, err)
		}
		if _, dup := users[name]; dup {
			return nil, fmt.Errorf("%s:%d: user %s is listed twice", path, n, name)
		}
		users[name] = h
	}
	return users, sc.Err()
}

// validUserName: user names are 1-64 letters, digits, '-', '_' or '.'.
func validUserName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// CheckUserName says why a name cannot be a user's, if it cannot.
func CheckUserName(name string) error {
	if !validUserName(name) {
		return fmt.Errorf("user name %q: 1-64 letters, digits, '-', '_' or '.'", name)
	}
	return nil
}

// CheckPassword says whether password matches a "$7$" hash.
func CheckPassword(h, password string) (bool, error) {
	ph, err := parseHash(h)
	if err != nil {
		return false, err
	}
	return ph.check(password), nil
}
