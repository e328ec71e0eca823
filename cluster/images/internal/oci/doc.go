// Package oci builds OCI image archives without a Docker engine or a
// registry, for `ctr -n k8s.io images import` on a single-node test
// cluster.
//
// An image is a distroless/cc-debian12-like base assembled from the
// host's own Debian 12 files (the binary's shared-library closure as ldd
// resolves it, the CA bundle, distroless's account files and directories)
// plus one binary, written as one gzip layer in an OCI image layout tar.
// The layout follows a Dockerfile's final stage (ParseDockerfile), whose
// instructions are either reproduced exactly or refused with the line
// that cannot be, so an image never silently differs from what the
// Dockerfile says. Timestamps are fixed and entries sorted, so the same
// inputs give the same digests.
package oci
