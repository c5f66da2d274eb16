# shellcheck shell=bash
# scripts/lib.sh: helpers shared by scripts/e2e, scripts/quickstart and scripts/bench*.
# Source it (". scripts/lib.sh"), do not run it. Needs bash, root, and the Debian
# packages install_deps installs (.ci/run and scripts/quickstart call it).
#
# What it gives you:
#   install_deps                the Debian packages below, and Go if there is none
#   setup_work [DIR]            $WORK, a scratch dir every user can traverse (rootless readers
#                               must reach stores inside it); removed on exit unless KEEP_WORK=1
#   on_exit CMD...              run CMD on exit (LIFO). lib.sh owns the EXIT trap: use this.
#   build_cargohold / build_mkimages   static binaries in $WORK/bin ($CARGOHOLD, $MKIMAGES)
#   start_registry              docker-registry on 127.0.0.1:$REGISTRY_PORT; sets $REGISTRY
#   make_tls_cert DIR           a self-signed certificate for an HTTPS registry (REGISTRY_TLS_CERT/KEY)
#   access_log_mark / registry_blob_gets MARK [DIGEST...]   count blob downloads
#   make_fixtures [REFS]        mkimages into $FIXTURES_DIR; fixture REF FIELD reads fixtures.json
#   push_fixture SRC [DEST]     push one fixture (SRC=name:tag) as cargotest/DEST, digests verified
#   push_fixtures [REFS]        make_fixtures + push each
#   Podman readers              scripts/lib-podman.sh, sourced below: podman_root STORE CMD...,
#                               podman_user USER STORE CMD..., and any version/mode/driver
#                               through pm_reader + pm
#   check_eq/check_match/check_contains_line/check_true, check_summary
#                               assertions that print ok/FAIL (expected vs got) and count
#
# Conventions: functions fail loudly (die) with what was expected; variables are
# upper-case globals prefixed by their area (REGISTRY_*, FIXTURES_*, PODMAN_*).

CARGOHOLD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Pure-Go static build, as DEVELOPERS.md says; btrfs and gpgme need cgo.
GO_BUILD_TAGS="exclude_graphdriver_btrfs containers_image_openpgp"
# /usr/local/go/bin is where Go lives on our machines; the Debian golang package is too old.
case ":$PATH:" in *:/usr/local/go/bin:*) ;; *) PATH=/usr/local/go/bin:$PATH ;; esac
export PATH

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'FATAL: %s\n' "$*" >&2
	exit 1
}

# ---------------------------------------------------------------- cleanup
# One EXIT trap for everything (a second `trap ... EXIT` would silently replace
# the first); cleanups run last-registered first, and a failing one does not
# stop the others.
_LIB_CLEANUPS=()
on_exit() { _LIB_CLEANUPS+=("$*"); }
_lib_run_cleanups() {
	local rc=$? i
	for ((i = ${#_LIB_CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${_LIB_CLEANUPS[i]}" || warn "cleanup failed: ${_LIB_CLEANUPS[i]}"
	done
	return "$rc"
}
trap _lib_run_cleanups EXIT

# _unmount_under DIR: unmount whatever is mounted below DIR, deepest first. Podman's
# overlay driver leaves its graphroot's overlay/ bind-mounted on itself after it
# exits, which would make `rm -rf $WORK` fail with EBUSY.
_unmount_under() {
	local m
	findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" || warn "could not unmount $m"
	done
	return 0
}
# Turn Ctrl-C, TERM and a closed output pipe (`scripts/e2e | head`) into a normal
# exit so the EXIT cleanups still run.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE

require_root() {
	[[ $(id -u) == 0 ]] || die "run this as root (it runs rootful Podman, creates a test user, chmods /dev/fuse)"
}

require_cmds() {
	local c missing=()
	for c in "$@"; do command -v "$c" >/dev/null || missing+=("$c"); done
	((${#missing[@]} == 0)) || die "missing commands: ${missing[*]} (run .ci/run, or apt-get install the packages it names)"
}

# loop_fs KIND DIR SIZE MKFS...: a new filesystem of SIZE in $WORK/KIND.img, made by the command MKFS...
# (given the image file), loop-mounted at DIR with mode 0755; setup_work's cleanup unmounts it.
loop_fs() {
	local kind=$1 dir=$2 size=$3
	shift 3
	truncate -s "$size" "$WORK/$kind.img"
	"$@" "$WORK/$kind.img" >/dev/null
	mkdir -p "$dir"
	mount -o loop "$WORK/$kind.img" "$dir"
	chmod 0755 "$dir"
}

# median: the median of the numbers on standard input, one a line (benchmarks' rounds).
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# setup_work [DIR]: create $WORK. It must be world-traversable (0755): the rootless
# test user reads stores inside it, and mktemp makes 0700 dirs.
setup_work() {
	if [[ -n ${1:-} ]]; then
		WORK=$1
		mkdir -p "$WORK"
	else
		WORK=$(mktemp -d /tmp/cargohold.XXXXXX)
		if [[ -z ${KEEP_WORK:-} ]]; then
			on_exit "rm -rf '$WORK'"
		else
			on_exit "log 'kept work dir $WORK'"
		fi
	fi
	WORK=$(cd "$WORK" && pwd)
	chmod 0755 "$WORK"
	local d=$WORK
	while [[ $d != / ]]; do
		d=$(dirname "$d")
		[[ $(stat -c %A "$d") == *[xt] ]] ||
			warn "$d is not world-searchable: rootless readers cannot reach stores under $WORK"
	done
	mkdir -p "$WORK/bin"
	# Podman's runtime dirs need short paths (see the readers section of lib-podman.sh).
	PODMAN_RUNDIR=$(mktemp -d /run/cargohold.XXXXXX)
	chmod 0755 "$PODMAN_RUNDIR"
	# Cleanups run last-registered first: stop rootless pause processes, unmount
	# what Podman left mounted, then remove the runtime dir (and $WORK, above).
	on_exit "rm -rf '$PODMAN_RUNDIR'"
	on_exit _unmount_under "'$PODMAN_RUNDIR'"
	on_exit _unmount_under "'$WORK'"
	on_exit pm_stop_pauses
	export WORK PODMAN_RUNDIR
}

# ---------------------------------------------------------------- machine setup
# Debian packages the scripts use. Recommends stay on: Podman's (catatonit for the
# rootless pause process, uidmap, fuse-overlayfs, slirp4netns) are what a real node
# has. curl: registry health checks; unzip: the Go toolchain zip; git: go build's
# VCS stamp; apache2-utils: htpasswd for the registry that requires a login; systemd:
# systemd-analyze for scripts/e2e-cvmfs (a minimal Debian may lack it); debootstrap:
# the newer Podman versions scripts/e2e-matrix runs (scripts/lib-podman.sh); time: /usr/bin/time for scripts/bench*;
# openssl: the self-signed certificate of scripts/e2e-registry's HTTPS registry; xfsprogs and e2fsprogs: the
# loop-mounted XFS (with reflinks) and ext4 of the shared-file-data tests (internal/testfs, scripts/e2e-dedup,
# scripts/bench-nightly).
DEB_PACKAGES=(podman skopeo buildah docker-registry fuse-overlayfs runc catatonit uidmap
	busybox-static attr libcap2-bin jq pigz zstd curl ca-certificates openssl unzip git apache2-utils systemd shellcheck debootstrap time
	xfsprogs e2fsprogs)

# GOLANGCI_LINT_VERSION: the linter scripts/test runs (configured by .golangci.yml).
GOLANGCI_LINT_VERSION=v2.15.0

# install_deps: make a fresh Debian 12 machine able to build and test cargohold.
# Idempotent: installs only what is missing (apt-get update only then), and Go only
# if there is none.
install_deps() {
	require_root
	local p missing=()
	for p in "${DEB_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "apt-get install ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get update -q
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
	fi
	command -v go >/dev/null || install_go
	command -v golangci-lint >/dev/null || install_golangci_lint
}

# install_golangci_lint: built from source through the Go module proxy (the only network CI
# has besides Debian's mirrors) into /usr/local/bin.
install_golangci_lint() {
	log "go install golangci-lint $GOLANGCI_LINT_VERSION"
	GOBIN=/usr/local/bin go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
}

# install_go: Debian's golang is far older than go.mod's, and our machines have Go
# in /usr/local/go. Without it, fetch the official distribution from the Go module
# proxy (besides Debian's mirrors the only network CI has): the module
# golang.org/toolchain's zip is the Go distribution. A go >= 1.21 later fetches
# any newer toolchain go.mod asks for by itself (GOTOOLCHAIN=auto).
install_go() {
	local want arch proxy url tmp
	want=go$(awk '$1 == "go" { print $2; exit }' "$CARGOHOLD_ROOT/go.mod")
	arch=$(dpkg --print-architecture)
	# The first proxy of $GOPROXY if it names one (a CI mirror), else the public one.
	proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%[,|]*}
	[[ $proxy == http* ]] || proxy=https://proxy.golang.org
	url=$proxy/golang.org/toolchain/@v/v0.0.1-$want.linux-$arch.zip
	log "no go in PATH: installing $want into /usr/local/go from $url"
	tmp=$(mktemp -d)
	curl -fsSL -o "$tmp/go.zip" "$url" || die "download of $url failed"
	unzip -q "$tmp/go.zip" -d "$tmp"
	rm -rf /usr/local/go
	mv "$tmp/golang.org/toolchain@v0.0.1-$want.linux-$arch" /usr/local/go
	chmod -R a+rX /usr/local/go
	rm -rf "$tmp"
	go version >/dev/null || die "the Go installed in /usr/local/go does not run"
}

# ---------------------------------------------------------------- builds
go_build() { # OUT PKG [GO BUILD FLAGS...]
	(cd "$CARGOHOLD_ROOT" && CGO_ENABLED=0 go build -tags "$GO_BUILD_TAGS" "${@:3}" -o "$1" "$2") ||
		die "go build $2 failed"
}
# cargohold_version: what the README's install command stamps (git describe of the checkout), or
# nothing where git cannot say (no checkout). safe.directory: CI's checkout may belong to another user.
cargohold_version() {
	git -c safe.directory='*' -C "$CARGOHOLD_ROOT" describe --tags --always --dirty 2>/dev/null || true
}
# build_cargohold: build ./cmd/cargohold into $WORK/bin and set $CARGOHOLD, unless
# CARGOHOLD already names a binary to test (a release build, or a stand-in).
build_cargohold() {
	if [[ -n ${CARGOHOLD:-} ]]; then
		[[ -x $CARGOHOLD ]] || die "CARGOHOLD=$CARGOHOLD is not an executable"
		log "testing CARGOHOLD=$CARGOHOLD (not building)"
		return 0
	fi
	log "building cargohold"
	go_build "$WORK/bin/cargohold" ./cmd/cargohold -ldflags "-X main.buildVersion=$(cargohold_version)"
	export CARGOHOLD=$WORK/bin/cargohold
}
build_mkimages() {
	[[ -x $WORK/bin/mkimages ]] || go_build "$WORK/bin/mkimages" ./internal/testimage/cmd/mkimages
	export MKIMAGES=$WORK/bin/mkimages
}

# ---------------------------------------------------------------- registry
# free_port: a TCP port on 127.0.0.1 nobody listens on. Not 5000: installing the
# Debian docker-registry package starts a system registry there.
free_port() {
	local p i
	for ((i = 0; i < 50; i++)); do
		p=$((20000 + RANDOM % 30000))
		# A refused connection means the port is free.
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free TCP port found"
}

# start_registry: a private docker-registry (distribution 2.8) over plain HTTP on
# 127.0.0.1, storage in $WORK/registry. Its access log (one line per request, Apache
# combined format; the registry writes it to stdout) goes to $REGISTRY_ACCESS_LOG so
# tests can count blob downloads; its own log goes to $REGISTRY_LOG. With
# REGISTRY_HTPASSWD set (a bcrypt htpasswd file) every request needs those credentials.
# With REGISTRY_SCHEMA1=1 it also accepts pushes of Docker schema 1 manifests (distribution
# 2.8 refuses them by default). With REGISTRY_TLS_CERT and REGISTRY_TLS_KEY (PEM files) it
# serves HTTPS instead, with that certificate (make_tls_cert makes a self-signed one). With
# REGISTRY_TOKEN_REALM (a token service's URL) and REGISTRY_TOKEN_CERTS (the PEM certificates its
# tokens are signed under) instead of REGISTRY_HTPASSWD, every request needs a bearer token from that
# service (distribution's token auth; service cargohold-test-registry, issuer cargohold-test-issuer).
start_registry() {
	require_cmds docker-registry curl
	local dir=$WORK/registry
	mkdir -p "$dir/data"
	REGISTRY_PORT=${REGISTRY_PORT:-$(free_port)}
	REGISTRY=127.0.0.1:$REGISTRY_PORT
	REGISTRY_ACCESS_LOG=$dir/access.log
	REGISTRY_LOG=$dir/registry.log
	cat >"$dir/config.yml" <<-EOF
		version: 0.1
		log:
		  level: info
		  formatter: text
		  accesslog:
		    disabled: false
		storage:
		  filesystem:
		    rootdirectory: $dir/data
		  delete:
		    enabled: true
		  maintenance:
		    uploadpurging:
		      enabled: false
		http:
		  addr: $REGISTRY
		  # a fixed secret silences the "No HTTP secret" warning; nothing here is secret
		  secret: cargohold-test-registry
	EOF
	local scheme=http curl_tls=()
	if [[ -n ${REGISTRY_TLS_CERT:-} ]]; then
		printf '  tls:\n    certificate: %s\n    key: %s\n' "$REGISTRY_TLS_CERT" "$REGISTRY_TLS_KEY" >>"$dir/config.yml"
		scheme=https curl_tls=(--cacert "$REGISTRY_TLS_CERT")
	fi
	if [[ -n ${REGISTRY_HTPASSWD:-} ]]; then
		printf 'auth:\n  htpasswd:\n    realm: cargohold-test\n    path: %s\n' "$REGISTRY_HTPASSWD" >>"$dir/config.yml"
	elif [[ -n ${REGISTRY_TOKEN_REALM:-} ]]; then
		printf 'auth:\n  token:\n    realm: %s\n    service: cargohold-test-registry\n    issuer: cargohold-test-issuer\n    rootcertbundle: %s\n' \
			"$REGISTRY_TOKEN_REALM" "$REGISTRY_TOKEN_CERTS" >>"$dir/config.yml"
	fi
	if [[ ${REGISTRY_SCHEMA1:-} == 1 ]]; then
		printf 'compatibility:\n  schema1:\n    enabled: true\n' >>"$dir/config.yml"
	fi

	# docker-registry reads REGISTRY_* variables of its environment as configuration; none of
	# ours (REGISTRY_TLS_CERT, an exported REGISTRY_AUTH_FILE) is meant for it.
	local v unset=()
	for v in $(compgen -e); do [[ $v != REGISTRY_* ]] || unset+=(-u "$v"); done
	env "${unset[@]}" docker-registry serve "$dir/config.yml" >"$REGISTRY_ACCESS_LOG" 2>"$REGISTRY_LOG" &
	REGISTRY_PID=$!
	on_exit stop_registry
	local i
	for ((i = 0; i < 100; i++)); do
		# 401 is an answer too: the registry is up and wants a login.
		if [[ $(curl -s "${curl_tls[@]}" -o /dev/null -w '%{http_code}' "$scheme://$REGISTRY/v2/" 2>/dev/null) == @(200|401) ]]; then
			log "registry up at $REGISTRY (pid $REGISTRY_PID, access log $REGISTRY_ACCESS_LOG)"
			return 0
		fi
		kill -0 "$REGISTRY_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$REGISTRY_LOG" >&2
	die "docker-registry did not answer on $scheme://$REGISTRY/v2/ (log above)"
}

# make_tls_cert DIR: a self-signed certificate for 127.0.0.1 (DIR/registry.crt, DIR/registry.key),
# valid for a day, as a site's private authority would give a registry.
make_tls_cert() {
	require_cmds openssl
	mkdir -p "$1"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 -keyout "$1/registry.key" -out "$1/registry.crt" 2>"$1/openssl.log" ||
		die "openssl could not make a certificate: $(cat "$1/openssl.log")"
}

stop_registry() {
	[[ -n ${REGISTRY_PID:-} ]] || return 0
	kill "$REGISTRY_PID" 2>/dev/null || true
	wait "$REGISTRY_PID" 2>/dev/null || true
	REGISTRY_PID=
}

# access_log_mark: the access log's current length, to pass to registry_blob_gets.
access_log_mark() { wc -l <"$REGISTRY_ACCESS_LOG"; }

# registry_blob_gets MARK [DIGEST...]: how many blob GETs the registry served after
# MARK, counting only the given digests ("sha256:...") if any are given.
registry_blob_gets() {
	local mark=$1
	shift
	local lines
	lines=$(tail -n +"$((mark + 1))" "$REGISTRY_ACCESS_LOG" | grep -E '"GET /v2/[^ ]+/blobs/sha256:[0-9a-f]{64} ' || true)
	if (($# > 0)); then
		local d pat=
		for d in "$@"; do pat+="${pat:+|}${d#sha256:}"; done
		lines=$(grep -E "blobs/sha256:($pat) " <<<"$lines" || true)
	fi
	if [[ -z $lines ]]; then echo 0; else wc -l <<<"$lines"; fi
}

# ---------------------------------------------------------------- fixtures
# make_fixtures [REFS]: write the fixture layouts (internal/testimage) to
# $FIXTURES_DIR; REFS is a comma list like "hello:1" (default: all).
make_fixtures() {
	build_mkimages
	FIXTURES_DIR=$WORK/fixtures
	FIXTURES_JSON=$FIXTURES_DIR/fixtures.json
	log "writing fixture images to $FIXTURES_DIR"
	"$MKIMAGES" ${1:+-only "$1"} "$FIXTURES_DIR" >/dev/null || die "mkimages failed"
}

# host_layer_lists DIR: the files of mkbench's host layers (scripts/bench, scripts/e2e-cvmfs-real),
# one path a line. DIR/base.list: the files of Debian's required packages and their dependencies,
# what Debian's own base image (debootstrap --variant=minbase) holds; DIR/runtime.list: python3.11
# with its standard library.
host_layer_lists() {
	local dir=$1 required
	required=$(dpkg-query -W -f '${Package} ${Priority}\n' | awk '$2 == "required" { print $1 }')
	# shellcheck disable=SC2086 # one package a word
	apt-cache depends --recurse --installed --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances $required 2>/dev/null | grep -v '^[ <]' | sort -u >"$dir/base.packages"
	# dpkg -L fails for virtual packages in the list; the others' files are what counts.
	{ xargs dpkg -L <"$dir/base.packages" 2>/dev/null || true; } | grep '^/' | sort -u >"$dir/base.list"
	{
		dpkg -L python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib 2>/dev/null || true
		[[ -d /usr/lib/python3.11 ]] && find /usr/lib/python3.11
	} | grep '^/' | sort -u >"$dir/runtime.list"
	[[ $(wc -l <"$dir/base.list") -gt 1000 ]] || die "base layer list $dir/base.list is too short: is this Debian?"
	[[ $(wc -l <"$dir/runtime.list") -gt 100 ]] || die "no python3.11 here for the runtime layer (apt-get install python3.11)"
}

# fixture REF JQ-FILTER: a field of one fixture, e.g. `fixture app:1 .config`.
fixture() {
	local v
	v=$(jq -er --arg r "$1" ".[] | select(.ref == \$r) | $2" "$FIXTURES_JSON") ||
		die "fixtures.json has no $2 for $1"
	printf '%s\n' "$v"
}

# fixture_refs: every fixture ref, one a line.
fixture_refs() { jq -r '.[].ref' "$FIXTURES_JSON"; }

# push_fixture SRC [DEST]: copy fixture SRC (name:tag) to $REGISTRY/cargotest/DEST
# (default SRC; a DEST with a slash is used as the whole repository path), then
# check the registry serves the very manifest mkimages wrote: --preserve-digests
# makes skopeo refuse to recompress or convert anything (without it, uncompressed
# layers get gzipped on the way); --all pushes every platform of an image index.
# REGISTRY_CREDS (user:password) logs in to a registry that requires it.
push_fixture() {
	local src=$1 dest=${2:-$1} layout manifest got
	[[ $dest == */* ]] || dest=cargotest/$dest
	layout=$(fixture "$src" .layout)
	manifest=$(fixture "$src" .manifest)
	skopeo copy -q --all --preserve-digests --dest-tls-verify=false ${REGISTRY_CREDS:+--dest-creds "$REGISTRY_CREDS"} \
		"oci:$layout:${src#*:}" "docker://$REGISTRY/$dest" ||
		die "skopeo copy of fixture $src to $REGISTRY/$dest failed"
	got=sha256:$(skopeo inspect --raw --tls-verify=false ${REGISTRY_CREDS:+--creds "$REGISTRY_CREDS"} "docker://$REGISTRY/$dest" | sha256sum | cut -d' ' -f1)
	[[ $got == "$manifest" ]] ||
		die "registry's manifest for $dest is $got, expected the layout's $manifest (skopeo rewrote it)"
}

push_fixtures() {
	make_fixtures "${1:-}"
	local r
	for r in $(fixture_refs); do push_fixture "$r"; done
	log "pushed $(fixture_refs | wc -l) fixture images to $REGISTRY/cargotest/"
}

# ---------------------------------------------------------------- checks
# check_* record one assertion each, print "ok" or a loud FAIL with what was
# expected and what came instead, and keep going so one run shows every failure.
# check_summary prints the final "N passed, M failed" and fails if M > 0.
CHECKS_PASSED=0
CHECKS_FAILED=0
CHECKS_FAILED_NAMES=()

pass() {
	CHECKS_PASSED=$((CHECKS_PASSED + 1))
	printf 'ok    %s\n' "$1"
}

# fail DESC EXPECTED GOT
fail() {
	CHECKS_FAILED=$((CHECKS_FAILED + 1))
	CHECKS_FAILED_NAMES+=("$1")
	{
		printf 'FAIL  %s\n' "$1"
		printf '      expected: %s\n' "$2"
		printf '      got:      %s\n' "$3"
	} >&2
}

# check_eq DESC EXPECTED GOT
check_eq() {
	if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "$2" "$3"; fi
}

# check_match DESC REGEX GOT: GOT matches the extended regex.
check_match() {
	if [[ $3 =~ $2 ]]; then pass "$1"; else fail "$1" "something matching /$2/" "$3"; fi
}

# check_contains_line DESC LINE TEXT: TEXT has LINE as one of its lines.
check_contains_line() {
	if grep -qxF -- "$2" <<<"$3"; then pass "$1"; else fail "$1" "a line '$2'" "$(tr '\n' '|' <<<"$3")"; fi
}

# check_true DESC CMD...: CMD succeeds.
check_true() {
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc" "success of: $*" "exit $?: ${out:0:400}"; fi
}

check_summary() {
	local f
	if ((CHECKS_FAILED > 0)); then
		printf '\nfailed checks:\n' >&2
		for f in "${CHECKS_FAILED_NAMES[@]}"; do printf '  - %s\n' "$f" >&2; done
	fi
	printf '%d passed, %d failed\n' "$CHECKS_PASSED" "$CHECKS_FAILED"
	((CHECKS_FAILED == 0))
}

# The Podman-reader harness (podman_root, podman_user, pm_reader, pm, the chroots of
# the newer versions).
# shellcheck source=scripts/lib-podman.sh
. "$CARGOHOLD_ROOT/scripts/lib-podman.sh"
