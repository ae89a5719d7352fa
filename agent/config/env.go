package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Every configuration key can be set from the environment, as container
// images and service managers expect: the variable is WHISKER_ and the
// key's path in upper case with '.' as '_' (mqtt.broker is
// WHISKER_MQTT_BROKER, camera.detect.min_score is
// WHISKER_CAMERA_DETECT_MIN_SCORE). A variable overrides the file; flags
// override both. Values are read as in the file (durations such as
// "300ms", true or false); a list of names is comma-separated, a list of records YAML. A WHISKER_ variable that names
// no key of a section is refused, so that a typo is never ignored.

// EnvPrefix starts every configuration variable.
const EnvPrefix = "WHISKER_"

// envReserved are WHISKER_ variables that are not configuration keys
// (set by `whisker boot`, the test helpers and the update crash tests).
var envReserved = []string{"WHISKER_BOOT", "WHISKER_SLOT", "WHISKER_DEPS", "WHISKER_UPDATE_CRASH_AFTER"}

// envKey is one configuration key reachable from the environment.
type envKey struct {
	path  string // dotted YAML path
	index []int  // field index path in Config
}

// EnvVar is the variable of a dotted configuration key.
func EnvVar(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// envKeys lists every leaf key of Config by its variable.
func envKeys() map[string]envKey {
	keys := map[string]envKey{}
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			idx := append(slices.Clone(index), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, path, idx)
				continue
			}
			keys[EnvVar(path)] = envKey{path: path, index: idx}
		}
	}
	walk(reflect.TypeOf(Config{}), "", nil)
	return keys
}

// EnvKeys lists the configuration variables with their keys, sorted, for
// documentation and `whisker config env`.
func EnvKeys() [][2]string {
	var out [][2]string
	for v, k := range envKeys() {
		out = append(out, [2]string{v, k.path})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// ApplyEnv sets the keys named by WHISKER_ variables of environ
// ("NAME=value" strings, as os.Environ gives them). An error names the
// variable, its key and what is wrong.
func ApplyEnv(cfg *Config, environ []string) error {
	keys := envKeys()
	sections := map[string]bool{}
	for _, k := range keys {
		first, _, _ := strings.Cut(k.path, ".")
		sections[EnvVar(first)+"_"] = true
	}
	var names []string
	values := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || slices.Contains(envReserved, name) {
			continue
		}
		if _, known := keys[name]; !known {
			for s := range sections {
				if strings.HasPrefix(name, s) {
					return fmt.Errorf("environment: %s is not a configuration variable (`whisker config env` lists them)", name)
				}
			}
			continue
		}
		if _, seen := values[name]; !seen {
			names = append(names, name)
		}
		values[name] = value
	}
	sort.Strings(names)
	root := reflect.ValueOf(cfg).Elem()
	for _, name := range names {
		k := keys[name]
		field := root.FieldByIndex(k.index)
		if err := setFromEnv(field, values[name]); err != nil {
			return fmt.Errorf("environment: %s (%s): %v", name, k.path, err)
		}
	}
	return nil
}

// maxEnvValue bounds a variable's value (bytes).
const maxEnvValue = 64 << 10

// setFromEnv sets a field from a variable's value, read as YAML would
// read it in the file.
func setFromEnv(field reflect.Value, value string) error {
	if len(value) > maxEnvValue {
		return fmt.Errorf("value is %d bytes; at most %d", len(value), maxEnvValue)
	}
	if strings.ContainsRune(value, 0) {
		return fmt.Errorf("value contains a null character")
	}
	switch {
	case field.Kind() == reflect.String:
		field.SetString(value)
		return nil
	case field.Kind() == reflect.Slice && field.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, item := range strings.Split(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		field.Set(reflect.ValueOf(list))
		return nil
	case field.Type() == durationType:
		d, err := time.ParseDuration(strings.TrimSpace(value))
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 300ms, 30s or 2m", value)
		}
		field.SetInt(int64(d))
		return nil
	}
	v := strings.TrimSpace(value)
	switch field.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not a %s", value, kindName(field.Type()))
		}
		field.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(v, 10, field.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a %s", value, kindName(field.Type()))
		}
		field.SetInt(n)
		return nil
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(v, field.Type().Bits())
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a %s", value, kindName(field.Type()))
		}
		field.SetFloat(f)
		return nil
	}
	if field.Kind() == reflect.Slice || field.Kind() == reflect.Struct || field.Kind() == reflect.Map {
		// A list of records (web.users): YAML, as in the file, e.g.
		// [{name: ann, password_hash: "$argon2id$..."}].
		fresh := reflect.New(field.Type())
		dec := yaml.NewDecoder(strings.NewReader(value))
		dec.KnownFields(true)
		if err := dec.Decode(fresh.Interface()); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%q is not a YAML %s: %v", value, kindName(field.Type()), err)
		}
		field.Set(fresh.Elem())
		return nil
	}
	return fmt.Errorf("%s cannot be set from the environment", field.Type())
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "whole number"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	return t.String()
}
