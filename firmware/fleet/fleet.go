// Package fleet rolls a bundle out to many cameras over their MQTT broker:
// a canary first, then batches, waiting for each device to report the new
// version healthy (committed) before going on, and stopping at the first
// failure.
//
// Anyone who can publish on the broker can publish a device's status, so a
// rollout believes success only from a report signed by the device's own
// key, enrolled at install (package attest), for the request it sent.
// Failures are believed from anyone: a forged failure can only stop a
// rollout, never push a version further. A deployment whose broker lets
// each camera write only its own topics may trust the broker instead
// (Options.TrustBroker).
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/whiskercam/whisker/agent/protocol"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/bundle"
)

// Options describe a rollout.
type Options struct {
	Broker   string
	Username string
	Password string
	Prefix   string // topic prefix, default "whisker"

	Bundle  string   // the bundle file
	Devices []string // device ids; empty means all online devices found
	// Discover is how long to listen for retained status messages.
	Discover time.Duration

	// Where devices fetch the bundle: URL if set, else Path (a file the
	// devices can read), else the bundle is served over HTTP on Serve and
	// advertised as http://Advertise:port/.
	URL       string
	Path      string
	Serve     string // listen address, default ":0"
	Advertise string // host devices reach this machine at

	Canary  int           // devices in the first stage, default 1
	Batch   int           // devices per later stage, default 3
	Timeout time.Duration // per device, default 5 minutes
	DryRun  bool

	// DeviceKeys are the enrolled keys of the devices: a device counts as
	// updated only on a report signed by its key for this rollout's
	// request. Devices without one are not updated.
	DeviceKeys attest.Keyring
	// TrustBroker believes unsigned statuses instead, for a broker whose
	// ACLs let each camera alone write its own topics. One of the two is
	// required.
	TrustBroker bool

	Out io.Writer // progress lines
}

// Result is one device's outcome.
type Result struct {
	Device     string
	OldVersion string
	NewVersion string
	Result     string // "ok", "failed: ...", "skipped", "dry run"
	Took       time.Duration
	Stage      int
}

// ErrStopped is returned when a stage failed and the rollout stopped.
var ErrStopped = errors.New("rollout stopped at the first failure")

// ErrNoTrust is returned when a rollout has neither device keys nor leave
// to trust the broker.
var ErrNoTrust = errors.New("no way to tell a camera's report from a forgery")

// maxMessage bounds a status or result message the rollout decodes.
const maxMessage = 64 << 10

type tracker struct {
	mu      sync.Mutex
	status  map[string]protocol.Status
	seq     map[string]int // status messages seen per device
	results map[string]chan protocol.Result
}

// Rollout runs a staged rollout and returns every device's result, in
// rollout order.
func Rollout(ctx context.Context, o Options) ([]Result, error) {
	if o.Prefix == "" {
		o.Prefix = "whisker"
	}
	if o.Canary <= 0 {
		o.Canary = 1
	}
	if o.Batch <= 0 {
		o.Batch = 3
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Discover <= 0 {
		o.Discover = 2 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	// The devices of a stage report concurrently; each line goes out whole.
	o.Out = &lineWriter{w: o.Out}
	switch {
	case len(o.DeviceKeys) == 0 && !o.TrustBroker:
		return nil, fmt.Errorf("%w: give the devices' enrolled keys (--device-keys), or --trust-broker when broker ACLs let each camera alone write its own topics", ErrNoTrust)
	case len(o.DeviceKeys) > 0 && o.TrustBroker:
		return nil, errors.New("device keys and trusting the broker exclude each other")
	}
	for _, d := range o.Devices {
		if !attest.ValidDevice(d) {
			return nil, fmt.Errorf("device id %q: must be 1-64 letters, digits, '-' or '_'", d)
		}
		if len(o.DeviceKeys) > 0 && o.DeviceKeys[d] == nil {
			return nil, fmt.Errorf("%s: %w", d, attest.ErrNotEnrolled)
		}
	}
	m, err := readManifest(o.Bundle)
	if err != nil {
		return nil, err
	}
	sha, err := bundle.FileSHA256(o.Bundle)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "bundle %s: version %s, sha256 %s\n", filepath.Base(o.Bundle), m.Version, sha[:16])
	if o.TrustBroker {
		fmt.Fprintln(o.Out, "trusting the broker: any client that may publish a camera's status can make it look updated")
	} else {
		fmt.Fprintf(o.Out, "believing only reports signed by the cameras' enrolled keys (%d enrolled)\n", len(o.DeviceKeys))
	}

	tr := &tracker{status: map[string]protocol.Status{}, seq: map[string]int{}, results: map[string]chan protocol.Result{}}
	client, err := connect(ctx, o, tr)
	if err != nil {
		return nil, err
	}
	defer client.Disconnect(200)

	// Devices: listed, or every online one that published a status.
	wait := time.NewTimer(o.Discover)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-wait.C:
	}
	tr.mu.Lock()
	devices := slices.Clone(o.Devices)
	if len(devices) == 0 {
		var unenrolled []string
		for id, st := range tr.status {
			switch {
			case st.State != "online":
			case len(o.DeviceKeys) > 0 && o.DeviceKeys[id] == nil:
				unenrolled = append(unenrolled, id)
			default:
				devices = append(devices, id)
			}
		}
		sort.Strings(devices)
		if len(unenrolled) > 0 {
			sort.Strings(unenrolled)
			fmt.Fprintf(o.Out, "left out, no enrolled key: %s\n", strings.Join(unenrolled, ", "))
		}
	}
	tr.mu.Unlock()
	if len(devices) == 0 {
		return nil, fmt.Errorf("no devices: none listed and none online on %s under %s/+/status", o.Broker, o.Prefix)
	}

	results := make([]Result, len(devices))
	stages := [][]int{}
	for i := 0; i < len(devices); {
		n := o.Batch
		if len(stages) == 0 {
			n = o.Canary
		}
		end := min(i+n, len(devices))
		idx := make([]int, 0, end-i)
		for j := i; j < end; j++ {
			idx = append(idx, j)
		}
		stages = append(stages, idx)
		i = end
	}
	for si, stage := range stages {
		for _, i := range stage {
			results[i] = Result{Device: devices[i], OldVersion: tr.version(devices[i]), NewVersion: m.Version, Stage: si + 1, Result: "skipped"}
		}
	}
	if o.DryRun {
		for i := range results {
			results[i].Result = "dry run"
		}
		return results, nil
	}

	source, stopServe, err := bundleSource(o, sha)
	if err != nil {
		return nil, err
	}
	defer stopServe()

	for si, stage := range stages {
		kind := "batch"
		if si == 0 {
			kind = "canary"
		}
		names := make([]string, len(stage))
		for k, i := range stage {
			names[k] = devices[i]
		}
		fmt.Fprintf(o.Out, "stage %d (%s): %s\n", si+1, kind, strings.Join(names, ", "))
		var wg sync.WaitGroup
		for _, i := range stage {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				start := time.Now()
				// A failure is believed from anyone, with its words: keep
				// them to one printable line.
				outcome := clean(updateOne(ctx, client, tr, o, devices[i], source, sha, m.Version))
				results[i].Result = outcome
				results[i].Took = time.Since(start).Round(100 * time.Millisecond)
				fmt.Fprintf(o.Out, "  %s: %s (%v)\n", devices[i], outcome, results[i].Took)
			}(i)
		}
		wg.Wait()
		for _, i := range stage {
			if results[i].Result != "ok" {
				return results, fmt.Errorf("%w: %s on %s", ErrStopped, results[i].Result, devices[i])
			}
		}
	}
	return results, nil
}

func (t *tracker) version(dev string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.status[dev]
	switch {
	case !ok:
		return "?"
	case st.Firmware != nil && st.Firmware.Version != "":
		return st.Firmware.Version
	}
	return st.Version
}

func connect(ctx context.Context, o Options, tr *tracker) (paho.Client, error) {
	statusTopic := o.Prefix + "/+/" + protocol.TopicStatus
	resultTopic := o.Prefix + "/+/" + protocol.TopicResult
	ready := make(chan error, 1)
	opts := paho.NewClientOptions().AddBroker(o.Broker).SetClientID("whisker-fleet-" + randomID()).
		SetUsername(o.Username).SetPassword(o.Password).SetCleanSession(true).SetAutoReconnect(true).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.SubscribeMultiple(map[string]byte{statusTopic: 1, resultTopic: 1}, func(_ paho.Client, msg paho.Message) {
				parts := strings.Split(msg.Topic(), "/")
				if len(parts) < 3 {
					return
				}
				dev := parts[len(parts)-2]
				if !attest.ValidDevice(dev) || len(msg.Payload()) > maxMessage {
					return
				}
				switch parts[len(parts)-1] {
				case protocol.TopicStatus:
					var st protocol.Status
					if json.Unmarshal(msg.Payload(), &st) != nil {
						return
					}
					tr.mu.Lock()
					tr.status[dev] = st
					tr.seq[dev]++
					tr.mu.Unlock()
				case protocol.TopicResult:
					var r protocol.Result
					if json.Unmarshal(msg.Payload(), &r) != nil {
						return
					}
					tr.mu.Lock()
					ch := tr.results[r.RequestID]
					tr.mu.Unlock()
					if ch != nil {
						select {
						case ch <- r:
						default:
						}
					}
				}
			})
			tok.WaitTimeout(10 * time.Second)
			select {
			case ready <- tok.Error():
			default:
			}
		})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect to %s: %v", o.Broker, tok.Error())
	}
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c, nil
}

// updateOne asks a device to update and waits for its health result.
func updateOne(ctx context.Context, c paho.Client, tr *tracker, o Options, dev, source, sha, version string) string {
	tr.mu.Lock()
	st, known := tr.status[dev]
	tr.mu.Unlock()
	if !known || st.State != "online" {
		return "failed: device is not online"
	}
	reqID := "fleet-" + randomID()
	results := make(chan protocol.Result, 4)
	tr.mu.Lock()
	tr.results[reqID] = results
	tr.mu.Unlock()
	defer func() {
		tr.mu.Lock()
		delete(tr.results, reqID)
		tr.mu.Unlock()
	}()
	cmd := map[string]string{"request_id": reqID, "cmd": "update", "sha256": sha}
	if strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://") {
		cmd["url"] = source
	} else {
		cmd["path"] = source
	}
	payload, _ := json.Marshal(cmd)
	if tok := c.Publish(o.Prefix+"/"+dev+"/"+protocol.TopicCmd, 1, false, payload); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return fmt.Sprintf("failed: could not send the update: %v", tok.Error())
	}
	if o.TrustBroker {
		return awaitBroker(ctx, tr, o, dev, reqID, sha, results)
	}
	return awaitSigned(ctx, tr, o, dev, reqID, sha, results)
}

// awaitBroker believes the device's status as published.
func awaitBroker(ctx context.Context, tr *tracker, o Options, dev, reqID, sha string, results chan protocol.Result) string {
	deadline := time.NewTimer(o.Timeout)
	defer deadline.Stop()
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	sawSwitch := false
	for {
		select {
		case <-ctx.Done():
			return "failed: " + ctx.Err().Error()
		case <-deadline.C:
			return fmt.Sprintf("failed: no health result within %v", o.Timeout)
		case r := <-results:
			if !r.Ok {
				return "failed: " + r.Error
			}
			if r.Update != nil && r.Update.State == "switching" {
				sawSwitch = true
			}
		case <-poll.C:
		}
		tr.mu.Lock()
		st := tr.status[dev]
		tr.mu.Unlock()
		if u := st.Update; u != nil && u.Bundle == sha {
			switch u.State {
			case "committed":
				if st.Firmware != nil && st.Firmware.Bundle == sha {
					return "ok"
				}
			case "rolled_back":
				return "failed: rolled back (" + u.Error + ")"
			case "failed":
				if sawSwitch || u.Error != "" {
					return "failed: " + u.Error
				}
			}
		}
	}
}

// awaitSigned believes success only from a report signed by the device's
// enrolled key for this request; a failure it believes from anyone.
func awaitSigned(ctx context.Context, tr *tracker, o Options, dev, reqID, sha string, results chan protocol.Result) string {
	deadline := time.NewTimer(o.Timeout)
	defer deadline.Stop()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	ignored := 0
	// ignore counts a claim of success that proves nothing; the first one
	// is said at once, for it means someone else speaks for the device.
	ignore := func(why string) {
		if ignored++; ignored == 1 {
			fmt.Fprintf(o.Out, "  %s: a claim of success ignored: %s (further ones are counted)\n", dev, clean(why))
		}
	}
	// judge reads one message's claims; it returns an outcome when the
	// message settles the update.
	judge := func(env *attest.Envelope, claimsSuccess bool) string {
		if env == nil {
			if claimsSuccess {
				ignore("no signed report")
			}
			return ""
		}
		r, err := o.DeviceKeys.Verify(dev, env)
		if err != nil {
			ignore(err.Error())
			return ""
		}
		if r.RequestID != reqID || r.Bundle != sha {
			if claimsSuccess {
				ignore("a report " + dev + " signed for another update") // replayed
			}
			return ""
		}
		switch {
		case r.Succeeded(reqID, sha):
			return "ok"
		case r.Event == attest.EventRolledBack:
			return "failed: rolled back (" + r.Reason + ")"
		case r.Event == attest.EventFailed:
			return "failed: " + r.Reason
		}
		return ""
	}
	seen := -1 // the status at hand is judged too
	for {
		select {
		case <-ctx.Done():
			return "failed: " + ctx.Err().Error()
		case <-deadline.C:
			msg := fmt.Sprintf("failed: no report signed by %s's key within %v", dev, o.Timeout)
			if ignored > 0 {
				msg += fmt.Sprintf(" (%d unsigned or unverifiable claims of success ignored)", ignored)
			}
			return msg
		case r := <-results:
			if !r.Ok {
				return "failed: " + r.Error
			}
			if out := judge(r.UpdateReport, r.Update != nil && r.Update.State == "committed"); out != "" {
				return out
			}
		case <-poll.C:
		}
		tr.mu.Lock()
		st, seq := tr.status[dev], tr.seq[dev]
		tr.mu.Unlock()
		if seq == seen {
			continue
		}
		seen = seq
		claims := st.Update != nil && st.Update.State == "committed" && st.Update.Bundle == sha
		if out := judge(st.UpdateReport, claims); out != "" {
			return out
		}
	}
}

// bundleSource returns where devices fetch the bundle, serving it over
// HTTP when neither a URL nor a path is given.
func bundleSource(o Options, sha string) (string, func(), error) {
	switch {
	case o.URL != "":
		return o.URL, func() {}, nil
	case o.Path != "":
		return o.Path, func() {}, nil
	}
	addr := o.Serve
	if addr == "" {
		addr = ":0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("serve the bundle: %w", err)
	}
	host := o.Advertise
	if host == "" {
		if h, _, err := net.SplitHostPort(ln.Addr().String()); err == nil && h != "::" && h != "0.0.0.0" {
			host = h
		} else {
			ln.Close()
			return "", nil, errors.New("serving on all addresses: say which address devices reach this machine at (--advertise)")
		}
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	name := sha + ".wsk"
	mux := http.NewServeMux()
	mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, o.Bundle) // answers Range requests, so devices resume
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + net.JoinHostPort(host, port) + "/" + name, func() { srv.Close() }, nil
}

func readManifest(path string) (*bundle.Manifest, error) {
	v, err := bundle.ReadUnverified(path)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	return v, nil
}

func randomID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// maxOutcome bounds an outcome's text, in runes.
const maxOutcome = 300

// clean makes text that may come from anyone on the broker safe to print:
// control characters (terminal escapes, line breaks) become '?', and it is
// cut at maxOutcome runes.
func clean(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxOutcome {
			b.WriteString("...")
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// lineWriter passes each Write on whole, one at a time.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// WriteTable prints the summary table.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSTAGE\tOLD VERSION\tNEW VERSION\tRESULT\tTIME")
	for _, r := range results {
		took := "-"
		if r.Took > 0 {
			took = r.Took.String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Device, r.Stage, r.OldVersion, r.NewVersion, r.Result, took)
	}
	return tw.Flush()
}
