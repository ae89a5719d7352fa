package model

import (
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/whiskercam/whisker/firmware/tfl"
)

// bufferAlign is the alignment of constant data in written models. Runtimes
// map weights in place, and SIMD kernels expect 16-byte aligned data.
const bufferAlign = 16

// Encode serialises a model. Unlike the generated Pack, it places every
// buffer's data on a 16-byte boundary, as TensorFlow Lite's own writer does.
func Encode(m *tfl.ModelT) []byte {
	size := 1 << 16
	for _, b := range m.Buffers {
		size += len(b.Data) + bufferAlign
	}
	fb := flatbuffers.NewBuilder(size)

	// Data first: aligned byte vectors, packed back to front.
	dataOff := make([]flatbuffers.UOffsetT, len(m.Buffers))
	for i := len(m.Buffers) - 1; i >= 0; i-- {
		d := m.Buffers[i].Data
		if len(d) == 0 {
			continue
		}
		fb.Prep(bufferAlign, len(d))
		dataOff[i] = fb.CreateByteVector(d)
	}
	bufOff := make([]flatbuffers.UOffsetT, len(m.Buffers))
	for i, b := range m.Buffers {
		tfl.BufferStart(fb)
		if dataOff[i] != 0 {
			tfl.BufferAddData(fb, dataOff[i])
		}
		tfl.BufferAddOffset(fb, b.Offset)
		tfl.BufferAddSize(fb, b.Size)
		bufOff[i] = tfl.BufferEnd(fb)
	}
	tfl.ModelStartBuffersVector(fb, len(bufOff))
	for i := len(bufOff) - 1; i >= 0; i-- {
		fb.PrependUOffsetT(bufOff[i])
	}
	buffers := fb.EndVector(len(bufOff))

	// The rest with the generated packers, buffers left out.
	rest := *m
	rest.Buffers = nil
	codes := packVector(fb, len(rest.OperatorCodes), func(i int) flatbuffers.UOffsetT { return rest.OperatorCodes[i].Pack(fb) })
	subgraphs := packVector(fb, len(rest.Subgraphs), func(i int) flatbuffers.UOffsetT { return rest.Subgraphs[i].Pack(fb) })
	desc := fb.CreateString(rest.Description)
	var metaBuf flatbuffers.UOffsetT
	if len(rest.MetadataBuffer) > 0 {
		tfl.ModelStartMetadataBufferVector(fb, len(rest.MetadataBuffer))
		for i := len(rest.MetadataBuffer) - 1; i >= 0; i-- {
			fb.PrependInt32(rest.MetadataBuffer[i])
		}
		metaBuf = fb.EndVector(len(rest.MetadataBuffer))
	}
	var meta, sigs flatbuffers.UOffsetT
	if len(rest.Metadata) > 0 {
		meta = packVector(fb, len(rest.Metadata), func(i int) flatbuffers.UOffsetT { return rest.Metadata[i].Pack(fb) })
	}
	if len(rest.SignatureDefs) > 0 {
		sigs = packVector(fb, len(rest.SignatureDefs), func(i int) flatbuffers.UOffsetT { return rest.SignatureDefs[i].Pack(fb) })
	}

	tfl.ModelStart(fb)
	tfl.ModelAddVersion(fb, rest.Version)
	tfl.ModelAddOperatorCodes(fb, codes)
	tfl.ModelAddSubgraphs(fb, subgraphs)
	tfl.ModelAddDescription(fb, desc)
	tfl.ModelAddBuffers(fb, buffers)
	if metaBuf != 0 {
		tfl.ModelAddMetadataBuffer(fb, metaBuf)
	}
	if meta != 0 {
		tfl.ModelAddMetadata(fb, meta)
	}
	if sigs != 0 {
		tfl.ModelAddSignatureDefs(fb, sigs)
	}
	root := tfl.ModelEnd(fb)
	fb.FinishWithFileIdentifier(root, []byte("TFL3"))
	return fb.FinishedBytes()
}

func packVector(fb *flatbuffers.Builder, n int, pack func(int) flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	offs := make([]flatbuffers.UOffsetT, n)
	for i := range offs {
		offs[i] = pack(i)
	}
	fb.StartVector(4, n, 4)
	for i := n - 1; i >= 0; i-- {
		fb.PrependUOffsetT(offs[i])
	}
	return fb.EndVector(n)
}
