package broker

import (
	"fmt"
	"net"
	"strings"

	"github.com/whiskercam/whisker/agent/protocol"
)

// Config is who may use the embedded broker (mqtt.embedded in the agent's
// configuration).
type Config struct {
	// Anonymous is the role of clients that give no user name: operator,
	// viewer or none. They are let in only over loopback, whatever the
	// role.
	Anonymous string `yaml:"anonymous"`
	// PasswordFile holds the users' password hashes, "name:$7$..." a line
	// (mosquitto's password file format). Hashes may also be given with
	// each user.
	PasswordFile string `yaml:"password_file"`
	// Users are who may connect with a password, and their roles.
	Users []User `yaml:"users"`
}

// User is a broker user.
type User struct {
	Name string `yaml:"name"`
	// Role is camera, operator or viewer.
	Role string `yaml:"role"`
	// Device is a camera user's device id (default: its name).
	Device string `yaml:"device"`
	// PasswordHash is a "$7$" hash (whisker mqtt passwd); empty takes the
	// user's line of PasswordFile.
	PasswordHash string `yaml:"password_hash"`
}

// DefaultConfig lets anonymous clients on loopback in as operators (what
// `mosquitto_pub -h 127.0.0.1` on the camera itself does) and nobody else.
func DefaultConfig() Config { return Config{Anonymous: string(Operator)} }

// device is the device a camera user writes for.
func (u User) device() string {
	if u.Device != "" {
		return u.Device
	}
	return u.Name
}

// Loopback says whether a listen address (host:port) is on loopback only.
// An empty host, 0.0.0.0 and :: listen on every interface.
func Loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Validate checks the configuration for a broker listening on listen and
// names the first bad key (mqtt.embedded.*) with its value. A broker that
// listens beyond loopback must have users: anonymous clients are let in
// over loopback only, so without users nobody else could connect, and a
// camera open to its network without passwords is what this refuses.
func (c *Config) Validate(listen string) error {
	bad := func(key string, val any, why string) error {
		return fmt.Errorf("config: mqtt.embedded.%s: %v %s", key, val, why)
	}
	switch Role(c.Anonymous) {
	case Operator, Viewer, None:
	default:
		return bad("anonymous", fmt.Sprintf("%q", c.Anonymous), "must be operator, viewer or none (the role of clients without a user name, on loopback only)")
	}
	if !Loopback(listen) && len(c.Users) == 0 {
		return fmt.Errorf("config: mqtt.embedded_listen: %q listens beyond loopback, but mqtt.embedded.users is empty: add users with password hashes (whisker mqtt passwd), or listen on 127.0.0.1", listen)
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		if !validUserName(u.Name) {
			return bad(key+".name", fmt.Sprintf("%q", u.Name), "must be 1-64 letters, digits, '-', '_' or '.'")
		}
		if seen[u.Name] {
			return bad(key+".name", fmt.Sprintf("%q", u.Name), "is listed twice")
		}
		seen[u.Name] = true
		role, err := ParseRole(u.Role)
		if err != nil {
			return bad(key+".role", fmt.Sprintf("%q", u.Role), "must be camera, operator or viewer")
		}
		if role == Camera && !protocol.ValidID(u.device()) {
			return bad(key+".device", fmt.Sprintf("%q", u.device()), "must be the camera's device id (1-64 letters, digits, '-' or '_')")
		}
		if role != Camera && u.Device != "" {
			return bad(key+".device", fmt.Sprintf("%q", u.Device), "is for camera users only")
		}
		if u.PasswordHash == "" && c.PasswordFile == "" {
			return bad(key+".password_hash", `""`, "is missing: give a hash (whisker mqtt passwd) or mqtt.embedded.password_file")
		}
		if u.PasswordHash != "" {
			if _, err := parseHash(u.PasswordHash); err != nil {
				return bad(key+".password_hash", "(hidden)", err.Error())
			}
		}
	}
	return nil
}
