package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Media types and annotations of the OCI image spec and containerd.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	// AnnotationImageName is what containerd's importer names the image by.
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationRefName is the OCI layout's tag of a manifest.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// Config is the runtime part of an image config ("config" in the OCI
// image config JSON). Field names are the spec's.
type Config struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

// ImageConfig is the OCI image config blob.
type ImageConfig struct {
	Created      string    `json:"created,omitempty"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       Config    `json:"config"`
	RootFS       RootFS    `json:"rootfs"`
	History      []History `json:"history,omitempty"`
}

// RootFS lists the digests of the uncompressed layers.
type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// History describes how a layer was made.
type History struct {
	Created   string `json:"created,omitempty"`
	CreatedBy string `json:"created_by,omitempty"`
	Comment   string `json:"comment,omitempty"`
}

// Descriptor points at a blob.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform is the os and architecture of an index entry.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Manifest is the OCI image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Index is the OCI layout's index.json.
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Manifests     []Descriptor `json:"manifests"`
}

// Image is everything an archive is made from.
type Image struct {
	Ref       string // normalized reference, e.g. ghcr.io/wsring/wsring-router:0.1.0
	Tree      *Tree
	Config    Config
	CreatedBy string    // the history line: how the image was made
	Epoch     time.Time // file and config timestamps
}

// Epoch returns the timestamp for files and the config: SOURCE_DATE_EPOCH
// when set (the reproducible-builds convention), else the Unix epoch, so
// that the same inputs always give the same digests.
func Epoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
	}
	return time.Unix(n, 0).UTC(), nil
}

// NormalizeRef returns the full reference (with docker.io/ and library/
// added as Docker and the kubelet do, so the name matches what a pod spec
// asks for) and its tag. A tag is required and digests are refused: the
// archive names one tag.
func NormalizeRef(ref string) (full, tag string, err error) {
	if strings.Contains(ref, "@") {
		return "", "", fmt.Errorf("tag %q: digests are not supported, give name:tag", ref)
	}
	slash := strings.LastIndex(ref, "/")
	colon := strings.LastIndex(ref, ":")
	if colon <= slash {
		return "", "", fmt.Errorf("tag %q has no :tag", ref)
	}
	name, tag := ref[:colon], ref[colon+1:]
	if !validTag(tag) {
		return "", "", fmt.Errorf("tag %q: %q is not a valid tag", ref, tag)
	}
	first, _, hasSlash := strings.Cut(name, "/")
	hasDomain := hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost")
	if !hasDomain {
		if !strings.Contains(name, "/") {
			name = "library/" + name
		}
		name = "docker.io/" + name
	}
	repo := name
	if i := strings.Index(name, "/"); i >= 0 {
		repo = name[i+1:]
	}
	if repo == "" || repo != strings.ToLower(repo) || strings.Contains(repo, "//") {
		return "", "", fmt.Errorf("tag %q: the repository must be a lowercase path", ref)
	}
	return name + ":" + tag, tag, nil
}

// validTag checks the tag grammar [\w][\w.-]{0,127}.
func validTag(tag string) bool {
	if tag == "" || len(tag) > 128 || tag[0] == '.' || tag[0] == '-' {
		return false
	}
	for _, c := range tag {
		if !(c == '_' || c == '.' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			return false
		}
	}
	return true
}

// blob is a content-addressed piece of the archive.
type blob struct {
	digest string // "sha256:..."
	data   []byte
}

// newBlob hashes data.
func newBlob(data []byte) blob {
	return blob{digest: digestOf(data), data: data}
}

// digestOf is the OCI digest of data: "sha256:" and its hex SHA-256.
func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return sha256Digest(sum[:])
}

// blobPath is where the layout keeps the blob of a sha256 digest.
func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

// sha256Digest writes a SHA-256 sum as an OCI digest string.
func sha256Digest(sum []byte) string {
	return "sha256:" + hex.EncodeToString(sum)
}

// WriteArchive writes img as an OCI image layout tar to w and returns the
// manifest's digest.
func WriteArchive(w io.Writer, img *Image) (string, error) {
	full, tag, err := NormalizeRef(img.Ref)
	if err != nil {
		return "", err
	}
	layerGz, diffID, err := WriteLayer(img.Tree, img.Epoch)
	if err != nil {
		return "", err
	}
	layer := newBlob(layerGz)
	created := img.Epoch.UTC().Format(time.RFC3339)
	config, err := json.Marshal(ImageConfig{
		Created:      created,
		Architecture: "amd64",
		OS:           "linux",
		Config:       img.Config,
		RootFS:       RootFS{Type: "layers", DiffIDs: []string{diffID}},
		History:      []History{{Created: created, CreatedBy: img.CreatedBy, Comment: "distroless/cc-debian12 base assembled from host Debian 12 files, plus the binary"}},
	})
	if err != nil {
		return "", err
	}
	configBlob := newBlob(config)
	manifest, err := json.Marshal(Manifest{
		SchemaVersion: 2,
		MediaType:     MediaTypeManifest,
		Config:        Descriptor{MediaType: MediaTypeConfig, Digest: configBlob.digest, Size: int64(len(config))},
		Layers:        []Descriptor{{MediaType: MediaTypeLayer, Digest: layer.digest, Size: int64(len(layerGz))}},
	})
	if err != nil {
		return "", err
	}
	manifestBlob := newBlob(manifest)
	index, err := json.Marshal(Index{
		SchemaVersion: 2,
		MediaType:     MediaTypeIndex,
		Manifests: []Descriptor{{
			MediaType:   MediaTypeManifest,
			Digest:      manifestBlob.digest,
			Size:        int64(len(manifest)),
			Annotations: map[string]string{AnnotationImageName: full, AnnotationRefName: tag},
			Platform:    &Platform{Architecture: "amd64", OS: "linux"},
		}},
	})
	if err != nil {
		return "", err
	}
	files := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json": index,
	}
	for _, b := range []blob{layer, configBlob, manifestBlob} {
		files[blobPath(b.digest)] = b.data
	}
	return manifestBlob.digest, writeLayout(w, files, img.Epoch)
}

// writeLayout writes the layout's files, sorted, with fixed metadata.
func writeLayout(w io.Writer, files map[string][]byte, epoch time.Time) error {
	tw := tar.NewWriter(w)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(files) {
		data := files[name]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// WriteLayer writes the tree as a gzip-compressed tar layer and returns it
// with its diff ID, the digest of the uncompressed tar. Entries are sorted
// by path (parents before children) and carry only fixed metadata, so the
// same tree always gives the same bytes.
func WriteLayer(t *Tree, epoch time.Time) ([]byte, string, error) {
	var gzBuf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&gzBuf, gzip.DefaultCompression)
	if err != nil {
		return nil, "", err
	}
	diff := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, diff))
	paths := make([]string, 0, len(t.entries))
	for p := range t.entries {
		if p != "/" {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := writeEntry(tw, t.entries[p], epoch); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := gz.Close(); err != nil {
		return nil, "", err
	}
	return gzBuf.Bytes(), sha256Digest(diff.Sum(nil)), nil
}

// writeEntry writes one tree entry to the layer.
func writeEntry(tw *tar.Writer, e *entry, epoch time.Time) error {
	h := &tar.Header{
		Name:    strings.TrimPrefix(e.path, "/"),
		Mode:    e.mode,
		Uid:     e.uid,
		Gid:     e.gid,
		ModTime: epoch,
	}
	switch e.kind {
	case kindDir:
		h.Typeflag = tar.TypeDir
		h.Name += "/"
		return tw.WriteHeader(h)
	case kindSymlink:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = e.target
		return tw.WriteHeader(h)
	}
	h.Typeflag = tar.TypeReg
	if e.content != nil {
		h.Size = int64(len(e.content))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(e.content)
		return err
	}
	return copyHostFile(tw, h, e)
}

// copyHostFile streams a host file into the layer; a file that changed
// size since it was added is an error rather than a truncated image.
func copyHostFile(tw *tar.Writer, h *tar.Header, e *entry) error {
	f, err := os.Open(e.source)
	if err != nil {
		return err
	}
	defer f.Close()
	h.Size = e.size
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("%s: %w", e.source, err)
	}
	if n != e.size {
		return fmt.Errorf("%s changed while the image was built (%d bytes, expected %d)", e.source, n, e.size)
	}
	return nil
}

// WriteArchiveFile writes the archive to path through a temporary file in
// the same directory, so a failed build never leaves a half-written
// archive that a later import would take for a real one.
func WriteArchiveFile(path string, img *Image) (string, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	digest, err := WriteArchive(tmp, img)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return digest, nil
}
