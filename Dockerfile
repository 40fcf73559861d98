# syntax=docker/dockerfile:1
#
# The vwire image: the static vwire binary and FD.io VPP 25.10 on Ubuntu 24.04.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#       -t ghcr.io/vwire/vwire:latest .        (or: make docker)
#
# One image for every process. It runs as the unprivileged user vwire
# (65532), which is all the registry needs. The manager, the forwarder and VPP
# run as root and the forwarder and VPP privileged (network namespaces, links,
# taps, VPP's memory and API socket): deployments/kubernetes/node.yaml sets
# runAsUser: 0 for those containers and starts VPP with
# `command: [/usr/bin/vpp, -c, ...]`.

ARG GO_VERSION=1.26
ARG UBUNTU_VERSION=24.04

# ---- build: a static vwire ---------------------------------------------------
FROM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 \
    GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/vwire ./cmd/vwire \
 && /out/vwire version

# ---- runtime: Ubuntu 24.04 (noble) with VPP from FD.io's packages ----------
FROM ubuntu:${UBUNTU_VERSION}

# FD.io's per-release package repository on packagecloud (fdio/2510 holds
# VPP 25.10, the release vwire's VPP bindings are generated from), pinned so
# that apt cannot pick another VPP release.
ARG VPP_REPO=2510
ARG VPP_VERSION=25.10
ARG VERSION=dev

LABEL org.opencontainers.image.title="vwire" \
      org.opencontainers.image.description="vwire Network Service Mesh with FD.io VPP ${VPP_VERSION}" \
      org.opencontainers.image.source="https://github.com/vwire/vwire" \
      org.opencontainers.image.version="${VERSION}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# VPP_INSTALL_SKIP_SYSCTL: the vpp package's install script would otherwise
# apply its hugepage sysctls, which an image build cannot (and must not) do.
ENV DEBIAN_FRONTEND=noninteractive \
    VPP_INSTALL_SKIP_SYSCTL=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d -m 0755 /etc/apt/keyrings \
 && curl -fsSL "https://packagecloud.io/fdio/${VPP_REPO}/gpgkey" \
      | gpg --dearmor -o "/etc/apt/keyrings/fdio_${VPP_REPO}-archive-keyring.gpg" \
 && codename="$(. /etc/os-release && echo "${VERSION_CODENAME}")" \
 && echo "deb [signed-by=/etc/apt/keyrings/fdio_${VPP_REPO}-archive-keyring.gpg] https://packagecloud.io/fdio/${VPP_REPO}/ubuntu ${codename} main" \
      > /etc/apt/sources.list.d/99fd.io.list \
 && printf 'Package: vpp vpp-* libvppinfra*\nPin: version %s*\nPin-Priority: 1001\n' "${VPP_VERSION}" \
      > /etc/apt/preferences.d/99fd.io-vpp \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      vpp vpp-plugin-core vpp-crypto-engines \
      iproute2 iputils-ping \
 && apt-get purge -y --auto-remove curl gnupg \
 && rm -rf /var/lib/apt/lists/* \
 && vpp_version="$(dpkg-query -W -f '${Version}' vpp)" \
 && [[ "${vpp_version}" == "${VPP_VERSION}"* ]] \
 && echo "vpp ${vpp_version}"

RUN groupadd --system --gid 65532 vwire \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/vwire \
      --no-create-home --shell /usr/sbin/nologin vwire \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/vwire \
 && install -d -m 0755 /var/lib/networkservicemesh /run/vpp

COPY --from=build /out/vwire /usr/local/bin/vwire

# 5001 manager (peers), 5002 registry, 9090 health and metrics.
EXPOSE 5001 5002 9090
USER 65532:65532
WORKDIR /var/lib/vwire
ENTRYPOINT ["/usr/local/bin/vwire"]
CMD ["--help"]
