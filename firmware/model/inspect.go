package model

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/whiskercam/whisker/firmware/tfl"
)

// Tensor describes one tensor of a model.
type Tensor struct {
	Index    int     `json:"index"`
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Shape    []int   `json:"shape"`
	Constant bool    `json:"constant"`
	Scale    float32 `json:"scale,omitempty"`
	Zero     int64   `json:"zero_point,omitempty"`
}

// Operator describes one operator of a model.
type Operator struct {
	Index   int    `json:"index"`
	Op      string `json:"op"`
	Version int32  `json:"version"`
	Inputs  []int  `json:"inputs"`
	Outputs []int  `json:"outputs"`
	Options string `json:"options"`
}

// Info is what `whisker model inspect` prints.
type Info struct {
	SHA256      string         `json:"sha256"`
	Size        int            `json:"size"`
	Description string         `json:"description"`
	Subgraphs   int            `json:"subgraphs"`
	Inputs      []Tensor       `json:"inputs"`
	Outputs     []Tensor       `json:"outputs"`
	Operators   []Operator     `json:"operators"`
	Tensors     []Tensor       `json:"tensors"`
	OpCounts    map[string]int `json:"op_counts"`
	Metadata    []string       `json:"metadata,omitempty"`
	// Unknown lists fields the file has that this build does not know.
	Unknown []string `json:"unknown_fields,omitempty"`
}

// Inspect describes the main subgraph of a model file's contents.
func Inspect(data []byte) (*Info, error) {
	m, unknown, err := parse(data)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	info := &Info{
		SHA256:      hex.EncodeToString(sum[:]),
		Size:        len(data),
		Description: m.Description,
		Subgraphs:   len(m.Subgraphs),
		OpCounts:    map[string]int{},
		Unknown:     unknown,
	}
	sg := m.Subgraphs[0]
	desc := func(i int32) Tensor { return describeTensor(m, sg, int(i)) }
	for _, i := range sg.Inputs {
		info.Inputs = append(info.Inputs, desc(i))
	}
	for _, i := range sg.Outputs {
		info.Outputs = append(info.Outputs, desc(i))
	}
	for i := range sg.Tensors {
		info.Tensors = append(info.Tensors, desc(int32(i)))
	}
	for i, op := range sg.Operators {
		oc := m.OperatorCodes[op.OpcodeIndex]
		name := OpName(oc)
		info.OpCounts[name]++
		o := Operator{Index: i, Op: name, Version: oc.Version, Options: "-"}
		for _, x := range op.Inputs {
			o.Inputs = append(o.Inputs, int(x))
		}
		for _, x := range op.Outputs {
			o.Outputs = append(o.Outputs, int(x))
		}
		if op.BuiltinOptions != nil && op.BuiltinOptions.Type != tfl.BuiltinOptionsNONE {
			o.Options = tfl.EnumNamesBuiltinOptions[op.BuiltinOptions.Type]
			if op.BuiltinOptions.Value == nil {
				o.Options = fmt.Sprintf("option table %d (not handled)", op.BuiltinOptions.Type)
			}
		}
		info.Operators = append(info.Operators, o)
	}
	for _, md := range m.Metadata {
		if md != nil {
			info.Metadata = append(info.Metadata, md.Name)
		}
	}
	return info, nil
}

func describeTensor(m *tfl.ModelT, sg *tfl.SubGraphT, i int) Tensor {
	t := sg.Tensors[i]
	d := Tensor{Index: i, Name: t.Name, Type: t.Type.String(), Constant: len(m.Buffers[t.Buffer].Data) > 0}
	for _, s := range t.Shape {
		d.Shape = append(d.Shape, int(s))
	}
	if q := t.Quantization; q != nil && len(q.Scale) == 1 {
		d.Scale = q.Scale[0]
		if len(q.ZeroPoint) == 1 {
			d.Zero = q.ZeroPoint[0]
		}
	}
	return d
}

func shapeString(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func intsString(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, ",")
}

// WriteTable prints the description as aligned tables. With allTensors
// false, constant tensors (weights) are left out of the tensor table.
func (info *Info) WriteTable(w io.Writer, allTensors bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	p("Model\tsha256 %s, %d bytes, %d subgraph(s)\n", info.SHA256, info.Size, info.Subgraphs)
	if info.Description != "" {
		p("Description\t%s\n", info.Description)
	}
	if len(info.Metadata) > 0 {
		p("Metadata\t%s\n", strings.Join(info.Metadata, ", "))
	}
	if len(info.Unknown) > 0 {
		p("Warning\tfields from a newer schema, not shown: %s\n", strings.Join(info.Unknown, ", "))
	}
	p("\n")
	for _, group := range []struct {
		title string
		ts    []Tensor
	}{{"INPUTS", info.Inputs}, {"OUTPUTS", info.Outputs}} {
		p("%s\tindex\ttype\tshape\tquantisation\n", group.title)
		for _, t := range group.ts {
			p("  %s\t%d\t%s\t%s\t%s\n", shortName(t.Name), t.Index, t.Type, shapeString(t.Shape), quantString(t))
		}
		p("\n")
	}
	counts := make([]string, 0, len(info.OpCounts))
	for k, v := range info.OpCounts {
		counts = append(counts, fmt.Sprintf("%s x%d", k, v))
	}
	sort.Strings(counts)
	p("OPERATORS (%d)\t%s\n", len(info.Operators), strings.Join(counts, ", "))
	p("  #\top\tversion\tinputs\toutputs\toptions\n")
	for _, o := range info.Operators {
		p("  %d\t%s\t%d\t%s\t%s\t%s\n", o.Index, o.Op, o.Version, intsString(o.Inputs), intsString(o.Outputs), o.Options)
	}
	p("\n")
	shown := 0
	for _, t := range info.Tensors {
		if allTensors || !t.Constant {
			shown++
		}
	}
	what := "activations; --all adds weights"
	if allTensors {
		what = "all"
	}
	p("TENSORS (%d of %d, %s)\n", shown, len(info.Tensors), what)
	p("  #\tname\ttype\tshape\tquantisation\n")
	for _, t := range info.Tensors {
		if !allTensors && t.Constant {
			continue
		}
		p("  %d\t%s\t%s\t%s\t%s\n", t.Index, shortName(t.Name), t.Type, shapeString(t.Shape), quantString(t))
	}
	return tw.Flush()
}

func quantString(t Tensor) string {
	if t.Scale == 0 {
		return "-"
	}
	return fmt.Sprintf("scale %g, zero %d", t.Scale, t.Zero)
}

// shortName shortens the long names of fused operators for tables: their
// first part (which is also a prefix that cut accepts), then "...".
func shortName(name string) string {
	const max = 96
	if first, _, fused := strings.Cut(name, ";"); fused {
		name = first + ";..."
	}
	if len(name) > max {
		name = name[:max-3] + "..."
	}
	return name
}
