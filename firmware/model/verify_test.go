package model

import (
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"
)

// A field beyond the declared schema (a newer converter's) is reported.
func TestVerifyReportsUnknownFields(t *testing.T) {
	b := flatbuffers.NewBuilder(64)
	b.StartObject(9)
	b.PrependUint32Slot(0, 3, 0)
	b.PrependInt32Slot(8, 42, 0)
	root := b.EndObject()
	b.FinishWithFileIdentifier(root, []byte("TFL3"))
	unknown, err := verify(b.FinishedBytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(unknown) != 1 || unknown[0] != "Model field 8" {
		t.Fatalf("unknown fields %v", unknown)
	}
}

func TestVerifyRejectsHugeVectors(t *testing.T) {
	b := flatbuffers.NewBuilder(64)
	b.StartVector(4, 1, 4)
	b.PrependInt32(7)
	vec := b.EndVector(1)
	b.StartObject(8)
	b.PrependUint32Slot(0, 3, 0)
	b.PrependUOffsetTSlot(5, vec, 0)
	root := b.EndObject()
	b.FinishWithFileIdentifier(root, []byte("TFL3"))
	data := b.FinishedBytes()
	// Make the metadata_buffer vector claim a billion elements.
	unknown, err := verify(data)
	if err != nil || len(unknown) != 0 {
		t.Fatalf("good file: %v %v", unknown, err)
	}
	for i := 0; i+4 <= len(data); i++ {
		if data[i] == 1 && data[i+1] == 0 && data[i+2] == 0 && data[i+3] == 0 && i+4 < len(data) && data[i+4] == 7 {
			data[i+3] = 0x40
			if _, err := verify(data); err == nil {
				t.Fatal("vector of a billion elements passed")
			}
			return
		}
	}
	t.Fatal("vector length not found")
}
