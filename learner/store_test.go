package learner

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sample(label string, req string, f ...float32) Sample {
	return Sample{Label: label, Backbone: "bb@1", Source: "image", RequestID: req, Features: f, JPEG: []byte{0xff, 0xd8, 1, 2}, Time: time.Unix(1700000000, 5)}
}

func TestStoreRoundTripAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	id, dup, err := s.Add(sample("Tigger", "r1", 1, 2, 3))
	if err != nil || dup {
		t.Fatalf("add: %v dup=%v", err, dup)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Label != "Tigger" || got.Backbone != "bb@1" || len(got.Features) != 3 || got.Features[2] != 3 ||
		!bytes.Equal(got.JPEG, []byte{0xff, 0xd8, 1, 2}) || got.RequestID != "r1" || !got.Time.Equal(time.Unix(1700000000, 5)) {
		t.Fatalf("got %+v", got)
	}
}

func TestStoreDeduplicatesRequests(t *testing.T) {
	s := openTemp(t)
	id1, _, err := s.Add(sample("Misty", "req-7", 1))
	if err != nil {
		t.Fatal(err)
	}
	id2, dup, err := s.Add(sample("Misty", "req-7", 1))
	if err != nil || !dup || id2 != id1 {
		t.Fatalf("retry: id %d dup %v err %v, want id %d dup", id2, dup, err, id1)
	}
	if n, _ := s.Len(); n != 1 {
		t.Fatalf("%d samples after a retried request, want 1", n)
	}
}

func TestStoreRelabelDeleteAndDataset(t *testing.T) {
	s := openTemp(t)
	for i, l := range []string{"a", "a", "b", "c"} {
		if _, _, err := s.Add(sample(l, "", float32(i))); err != nil {
			t.Fatal(err)
		}
	}
	other := sample("a", "", 9)
	other.Backbone = "bb@2"
	if _, _, err := s.Add(other); err != nil {
		t.Fatal(err)
	}
	d, err := s.Dataset("bb@1")
	if err != nil || len(d.X) != 4 {
		t.Fatalf("dataset: %d vectors, err %v", len(d.X), err)
	}
	if n, err := s.Relabel("a", "z"); err != nil || n != 3 {
		t.Fatalf("relabel: %d, %v", n, err)
	}
	if n, err := s.Relabel("b", ""); err != nil || n != 1 {
		t.Fatalf("forget: %d, %v", n, err)
	}
	counts, _ := s.Counts("bb@1")
	want := []LabelCount{{"c", 1}, {"z", 2}}
	if len(counts) != 2 || counts[0] != want[0] || counts[1] != want[1] {
		t.Fatalf("counts %v, want %v", counts, want)
	}
	if err := s.Delete(12345); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestDecodeSampleRejectsDamage(t *testing.T) {
	good := sample("Tigger", "r", 1, 2, 3)
	enc := good.encode()
	for i := range enc {
		if _, err := decodeSample(1, enc[:i], true); err == nil {
			t.Fatalf("truncated to %d bytes decoded", i)
		}
	}
	if _, err := decodeSample(1, append(enc, 0), true); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

func FuzzDecodeSample(f *testing.F) {
	s := sample("Tigger", "r", 1, 2, 3)
	f.Add(s.encode())
	f.Add([]byte("WS\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		smp, err := decodeSample(1, b, true)
		if err != nil {
			return
		}
		// What decodes survives a re-encode unchanged.
		again, err := decodeSample(1, smp.encode(), true)
		if err != nil {
			t.Fatalf("re-encoded sample does not decode: %v", err)
		}
		if again.Label != smp.Label || again.Backbone != smp.Backbone || !again.Time.Equal(smp.Time) ||
			len(again.Features) != len(smp.Features) || !bytes.Equal(again.JPEG, smp.JPEG) {
			t.Fatalf("re-encoding changed the sample")
		}
	})
}

func TestStoreAddManySetLabelRemove(t *testing.T) {
	s := openTemp(t)
	ids, dups, err := s.AddMany([]Sample{sample("a", "r1", 1), sample("b", "r2", 2), sample("a", "r1", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] == ids[1] || ids[2] != ids[0] || dups[0] || dups[1] || !dups[2] {
		t.Fatalf("ids %v dups %v: the repeated request id within a batch must be a duplicate", ids, dups)
	}
	if _, _, err := s.AddMany([]Sample{sample("c", "r3", 3), sample("", "r4", 4)}); err == nil {
		t.Fatal("a batch with an unlabelled sample was stored")
	}
	if n, _ := s.Len(); n != 2 {
		t.Fatalf("%d samples: a failed batch must store nothing", n)
	}
	old, err := s.SetLabel(ids[1], "z")
	if err != nil || old.Label != "b" || old.JPEG != nil {
		t.Fatalf("set label: %+v, %v", old, err)
	}
	if got, _ := s.Get(ids[1]); got.Label != "z" || !bytes.Equal(got.JPEG, []byte{0xff, 0xd8, 1, 2}) || got.Features[0] != 2 {
		t.Fatalf("relabelled sample %+v", got)
	}
	gone, err := s.Remove(ids[0])
	if err != nil || gone.Label != "a" {
		t.Fatalf("remove: %+v, %v", gone, err)
	}
	if _, err := s.Get(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed sample still there: %v", err)
	}
	if _, err := s.SetLabel(ids[0], "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("relabel a removed sample: %v", err)
	}
	// A retried request does not bring a removed sample back.
	if id, dup, err := s.Add(sample("a", "r1", 1)); err != nil || !dup || id != ids[0] {
		t.Fatalf("retry of a removed sample's request: id %d dup %v err %v", id, dup, err)
	}
}
