package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Inspection is what "ociimage inspect" prints: enough to check an archive
// from a test or a shell script without a container runtime.
type Inspection struct {
	Tag            string        `json:"tag"`
	RefName        string        `json:"refName"`
	ManifestDigest string        `json:"manifestDigest"`
	Architecture   string        `json:"architecture"`
	OS             string        `json:"os"`
	Config         InspectConfig `json:"config"`
	Layers         []LayerInfo   `json:"layers"`
	Files          []FileInfo    `json:"files"`
}

// InspectConfig is the runtime config of the image.
type InspectConfig struct {
	User         string            `json:"user"`
	Entrypoint   []string          `json:"entrypoint"`
	Cmd          []string          `json:"cmd"`
	ExposedPorts []string          `json:"exposedPorts"`
	Env          []string          `json:"env"`
	Labels       map[string]string `json:"labels"`
	WorkingDir   string            `json:"workingDir"`
}

// LayerInfo identifies one layer.
type LayerInfo struct {
	Digest string `json:"digest"`
	DiffID string `json:"diffID"`
	Size   int64  `json:"size"`
}

// FileInfo is one entry of a layer.
type FileInfo struct {
	Path   string `json:"path"`
	Type   string `json:"type"` // file, dir, symlink, hardlink or other
	Mode   string `json:"mode"` // octal permission bits, e.g. "0755", "1777"
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Size   int64  `json:"size,omitempty"`
	Target string `json:"target,omitempty"` // of a symlink or hardlink
	Layer  int    `json:"layer"`
}

// Inspect reads an OCI layout tar and checks it the way an importer
// would: every blob's digest matches its name and its descriptor's size,
// the manifest and config have the expected media types, and each
// layer's uncompressed digest is the config's diff ID.
func Inspect(r io.Reader) (*Inspection, error) {
	files, err := readTar(r)
	if err != nil {
		return nil, err
	}
	if err := checkLayoutFile(files); err != nil {
		return nil, err
	}
	var index Index
	if err := unmarshalFile(files, "index.json", &index); err != nil {
		return nil, err
	}
	if len(index.Manifests) != 1 {
		return nil, fmt.Errorf("index.json: expected exactly one manifest, found %d", len(index.Manifests))
	}
	desc := index.Manifests[0]
	if desc.MediaType != MediaTypeManifest {
		return nil, fmt.Errorf("index.json: manifest media type is %q", desc.MediaType)
	}
	var manifest Manifest
	if err := unmarshalBlob(files, desc, &manifest); err != nil {
		return nil, err
	}
	if manifest.Config.MediaType != MediaTypeConfig {
		return nil, fmt.Errorf("manifest: config media type is %q", manifest.Config.MediaType)
	}
	var config ImageConfig
	if err := unmarshalBlob(files, manifest.Config, &config); err != nil {
		return nil, err
	}
	if len(config.RootFS.DiffIDs) != len(manifest.Layers) {
		return nil, fmt.Errorf("config has %d diff_ids for %d layers", len(config.RootFS.DiffIDs), len(manifest.Layers))
	}
	out := &Inspection{
		Tag:            desc.Annotations[AnnotationImageName],
		RefName:        desc.Annotations[AnnotationRefName],
		ManifestDigest: desc.Digest,
		Architecture:   config.Architecture,
		OS:             config.OS,
		Config:         inspectConfig(config.Config),
	}
	for i, layer := range manifest.Layers {
		data, err := blobData(files, layer)
		if err != nil {
			return nil, err
		}
		if layer.MediaType != MediaTypeLayer {
			return nil, fmt.Errorf("layer %s: media type %q is not %s", layer.Digest, layer.MediaType, MediaTypeLayer)
		}
		entries, diffID, err := readLayer(data, i)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", layer.Digest, err)
		}
		if diffID != config.RootFS.DiffIDs[i] {
			return nil, fmt.Errorf("layer %s: uncompressed digest %s is not the config's diff_id %s", layer.Digest, diffID, config.RootFS.DiffIDs[i])
		}
		out.Layers = append(out.Layers, LayerInfo{Digest: layer.Digest, DiffID: diffID, Size: layer.Size})
		out.Files = append(out.Files, entries...)
	}
	return out, nil
}

// readTar loads the regular files of an archive into memory by name.
func readTar(r io.Reader) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", h.Name, err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = data
	}
}

// checkLayoutFile checks the oci-layout marker.
func checkLayoutFile(files map[string][]byte) error {
	var layout struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := unmarshalFile(files, "oci-layout", &layout); err != nil {
		return err
	}
	if layout.Version != "1.0.0" {
		return fmt.Errorf("oci-layout: imageLayoutVersion is %q, want 1.0.0", layout.Version)
	}
	return nil
}

// unmarshalFile decodes a JSON file of the archive.
func unmarshalFile(files map[string][]byte, name string, v any) error {
	data, ok := files[name]
	if !ok {
		return fmt.Errorf("the archive has no %s", name)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// unmarshalBlob decodes the JSON blob a descriptor points at.
func unmarshalBlob(files map[string][]byte, d Descriptor, v any) error {
	data, err := blobData(files, d)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return nil
}

// blobData returns a blob after checking its digest and size.
func blobData(files map[string][]byte, d Descriptor) ([]byte, error) {
	if !strings.HasPrefix(d.Digest, "sha256:") {
		return nil, fmt.Errorf("digest %q is not sha256", d.Digest)
	}
	data, ok := files[blobPath(d.Digest)]
	if !ok {
		return nil, fmt.Errorf("blob %s is missing from the archive", d.Digest)
	}
	if got := digestOf(data); got != d.Digest {
		return nil, fmt.Errorf("blob %s: content hashes to %s", d.Digest, got)
	}
	if int64(len(data)) != d.Size {
		return nil, fmt.Errorf("blob %s: %d bytes, descriptor says %d", d.Digest, len(data), d.Size)
	}
	return data, nil
}

// readLayer lists a gzip layer's entries and returns the digest of the
// uncompressed tar, end-of-archive padding included.
func readLayer(data []byte, layer int) ([]FileInfo, string, error) {
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, "", err
	}
	diff := sha256.New()
	tee := io.TeeReader(gz, diff)
	tr := tar.NewReader(tee)
	var out []FileInfo
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, fileInfo(h, layer))
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, "", err
	}
	return out, sha256Digest(diff.Sum(nil)), nil
}

// fileInfo describes a tar header.
func fileInfo(h *tar.Header, layer int) FileInfo {
	fi := FileInfo{
		Path:  "/" + strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/"),
		Mode:  fmt.Sprintf("%04o", h.Mode&0o7777),
		UID:   h.Uid,
		GID:   h.Gid,
		Layer: layer,
	}
	switch h.Typeflag {
	case tar.TypeReg:
		fi.Type, fi.Size = "file", h.Size
	case tar.TypeDir:
		fi.Type = "dir"
	case tar.TypeSymlink:
		fi.Type, fi.Target = "symlink", h.Linkname
	case tar.TypeLink:
		fi.Type, fi.Target = "hardlink", h.Linkname
	default:
		fi.Type = "other"
	}
	return fi
}

// inspectConfig flattens the config for printing, ports sorted.
func inspectConfig(c Config) InspectConfig {
	ports := make([]string, 0, len(c.ExposedPorts))
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	return InspectConfig{
		User:         c.User,
		Entrypoint:   c.Entrypoint,
		Cmd:          c.Cmd,
		ExposedPorts: ports,
		Env:          c.Env,
		Labels:       c.Labels,
		WorkingDir:   c.WorkingDir,
	}
}
