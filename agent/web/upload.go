package web

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/whiskercam/whisker/agent/protocol"
)

// maxField bounds a form field of an upload.
const maxField = 1024

// uploadAction labels photos: each is one label request with the pet
// found by the detector (detect), as MQTT's label request with an image.
// The multipart body is read part by part: its size is bounded before
// anything is read, the security token and the label must come before
// the photos, and each photo is bounded, checked to be a JPEG or PNG, and
// handed on before the next is read, so at most one photo is in memory.
// The photo itself is decoded only by the agent's image decoder.
func (s *Server) uploadAction(w http.ResponseWriter, r *http.Request) {
	limit := s.cfg.MaxUpload*int64(s.cfg.MaxFiles) + 64<<10
	if r.ContentLength > limit {
		s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the upload is %d bytes; at most %d photos of %d bytes each (web.max_files, web.max_upload)",
			r.ContentLength, s.cfg.MaxFiles, s.cfg.MaxUpload), "/pets")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "multipart/form-data" {
		s.fail(w, r, http.StatusUnsupportedMediaType, "send the photos as multipart/form-data", "/pets")
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "the upload cannot be read: "+err.Error(), "/pets")
		return
	}
	rs := sessionOf(r)
	tokenOK := s.csrfOK(r, rs, r.Header.Get("X-CSRF-Token"))
	fields := map[string]string{}
	var o outcome
	var errs []string
	n, stored := 0, 0
	label := ""
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.fail(w, r, http.StatusBadRequest, "the upload cannot be read: "+err.Error(), "/pets")
			return
		}
		if part.FileName() == "" {
			v, err := io.ReadAll(io.LimitReader(part, maxField+1))
			if err != nil || len(v) > maxField || !utf8.Valid(v) {
				s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("form field %q is too long or not text", part.FormName()), "/pets")
				return
			}
			fields[part.FormName()] = string(v)
			if part.FormName() == "csrf" && s.csrfOK(r, rs, string(v)) {
				tokenOK = true
			}
			continue
		}
		if !tokenOK {
			s.fail(w, r, http.StatusForbidden, "refused: the form's security token is missing or stale; load the page again", "/pets")
			return
		}
		label = strings.TrimSpace(fields["label"])
		if label == "" {
			label = strings.TrimSpace(fields["name"])
		}
		if err := protocol.CheckLabelName(label); err != nil {
			s.fail(w, r, http.StatusBadRequest, "choose a name for the photos first: "+err.Error(), "/pets")
			return
		}
		if n == s.cfg.MaxFiles {
			errs = append(errs, fmt.Sprintf("only %d photos per upload (web.max_files): the rest were not read", s.cfg.MaxFiles))
			break
		}
		n++
		name := part.FileName()
		if len(name) > 80 {
			name = name[:80]
		}
		data, err := io.ReadAll(io.LimitReader(part, s.cfg.MaxUpload+1))
		switch {
		case err != nil:
			s.fail(w, r, http.StatusBadRequest, "the upload cannot be read: "+err.Error(), "/pets")
			return
		case int64(len(data)) > s.cfg.MaxUpload:
			errs = append(errs, fmt.Sprintf("%s is over %d bytes (web.max_upload)", name, s.cfg.MaxUpload))
			continue
		case !isJPEG(data) && !isPNG(data):
			errs = append(errs, fmt.Sprintf("%s is not a JPEG or PNG photo", name))
			continue
		}
		one := s.do(r, protocol.TopicLabel, []map[string]any{{"request_id": requestID(r, fmt.Sprint(n)), "label": label, "detect": true,
			"image": base64.StdEncoding.EncodeToString(data)}}, "")
		o.Results = append(o.Results, one.Results...)
		if one.OK {
			stored++
		} else {
			errs = append(errs, name+": "+strings.TrimPrefix(one.Message, "refused: "))
		}
	}
	if n == 0 && len(errs) == 0 {
		if !tokenOK {
			s.fail(w, r, http.StatusForbidden, "refused: the form's security token is missing or stale; load the page again", "/pets")
			return
		}
		s.fail(w, r, http.StatusBadRequest, "choose photos to upload", "/pets")
		return
	}
	o.OK = len(errs) == 0
	o.Message = fmt.Sprintf("stored %d of %d photo(s) as %q", stored, n, label)
	if len(errs) > 0 {
		o.Message += "; " + strings.Join(errs, "; ")
	}
	s.answer(w, r, o, "/pets")
}

func isJPEG(b []byte) bool { return len(b) > 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF }

func isPNG(b []byte) bool { return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) }
