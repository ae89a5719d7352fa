package protocol

// DiskHealth is the sample store's disk health, as the status topic,
// answers and stats carry it: whether the next sample can be stored, and
// if not, why.
type DiskHealth struct {
	OK bool `json:"ok"`
	// Problem says what is wrong, for a person.
	Problem string `json:"problem,omitempty"`
	// FreeBytes is the free space beside the store (-1: unknown), of which
	// ReserveBytes is never used.
	FreeBytes    int64 `json:"free_bytes"`
	ReserveBytes int64 `json:"reserve_bytes"`
	// StoreBytes is the store file's size, SampleBytes what its samples
	// take, MaxSampleBytes their limit (0: none).
	StoreBytes     int64 `json:"store_bytes"`
	SampleBytes    int64 `json:"sample_bytes"`
	MaxSampleBytes int64 `json:"max_sample_bytes,omitempty"`
	Samples        int   `json:"samples"`
	// LastWriteError is the last failed write, if the last write failed.
	LastWriteError string `json:"last_write_error,omitempty"`
}
