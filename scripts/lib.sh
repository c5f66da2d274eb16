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
#   access_log_mark / registry_blob_gets MARK [DIGEST...]   count blob downloads
#   make_fixtures [REFS]        mkimages into $FIXTURES_DIR; fixture REF FIELD reads fixtures.json
#   push_fixture SRC [DEST]     push one fixture (SRC=name:tag) as cargotest/DEST, digests verified
#   push_fixtures [REFS]        make_fixtures + push each
#   podman_root STORE CMD...    rootful Podman: private empty root + STORE as additional store
#   podman_user USER STORE CMD...   the same as a throwaway non-root USER (created if needed)
#   podman_store_conf STORE     the storage.conf podman_root uses (for skopeo containers-storage:)
#   make_store_readable STORE   chmod a Podman-written store so others can read its metadata
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

# Flags every container run gets (see "Facts about Podman" in DEVELOPERS.md):
#   --runtime runc and the two ulimits: without them Podman 4.3 cannot start
#   containers on our machines.  --net=none: rootless has no working network here;
#   rootful would work without it, but it would set up a bridge and firewall rules
#   on the host, which a test has no business doing.  --pull=never: a test of a
#   store must fail, never fall back to pulling from the registry.
PODMAN_GLOBAL_FLAGS=(--runtime runc)
PODMAN_RUN_FLAGS=(--pull=never --net=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

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
	# Podman's runtime dirs need short paths (see the podman section below).
	PODMAN_RUNDIR=$(mktemp -d /run/cargohold.XXXXXX)
	chmod 0755 "$PODMAN_RUNDIR"
	# Cleanups run last-registered first: stop rootless pause processes, unmount
	# what Podman left mounted, then remove the runtime dir (and $WORK, above).
	on_exit "rm -rf '$PODMAN_RUNDIR'"
	on_exit _unmount_under "'$PODMAN_RUNDIR'"
	on_exit _unmount_under "'$WORK'"
	on_exit _podman_user_stop_all
	export WORK PODMAN_RUNDIR
}

# ---------------------------------------------------------------- machine setup
# Debian packages the scripts use. Recommends stay on: Podman's (catatonit for the
# rootless pause process, uidmap, fuse-overlayfs, slirp4netns) are what a real node
# has. curl: registry health checks; unzip: the Go toolchain zip; git: go build's
# VCS stamp; apache2-utils: htpasswd for the registry that requires a login; systemd:
# systemd-analyze for scripts/e2e-cvmfs (a minimal Debian may lack it); debootstrap:
# the newer Podman versions scripts/e2e-matrix runs (scripts/lib-podman.sh).
DEB_PACKAGES=(podman skopeo buildah docker-registry fuse-overlayfs runc catatonit uidmap
	busybox-static attr libcap2-bin jq pigz zstd curl ca-certificates unzip git apache2-utils systemd shellcheck debootstrap)

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
go_build() { # OUT PKG
	(cd "$CARGOHOLD_ROOT" && CGO_ENABLED=0 go build -tags "$GO_BUILD_TAGS" -o "$1" "$2") ||
		die "go build $2 failed"
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
	go_build "$WORK/bin/cargohold" ./cmd/cargohold
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
# 2.8 refuses them by default).
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
	if [[ -n ${REGISTRY_HTPASSWD:-} ]]; then
		printf 'auth:\n  htpasswd:\n    realm: cargohold-test\n    path: %s\n' "$REGISTRY_HTPASSWD" >>"$dir/config.yml"
	fi
	if [[ ${REGISTRY_SCHEMA1:-} == 1 ]]; then
		printf 'compatibility:\n  schema1:\n    enabled: true\n' >>"$dir/config.yml"
	fi
	docker-registry serve "$dir/config.yml" >"$REGISTRY_ACCESS_LOG" 2>"$REGISTRY_LOG" &
	REGISTRY_PID=$!
	on_exit stop_registry
	local i
	for ((i = 0; i < 100; i++)); do
		# 401 is an answer too: the registry is up and wants a login.
		if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/" 2>/dev/null) == @(200|401) ]]; then
			log "registry up at $REGISTRY (pid $REGISTRY_PID, access log $REGISTRY_ACCESS_LOG)"
			return 0
		fi
		kill -0 "$REGISTRY_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$REGISTRY_LOG" >&2
	die "docker-registry did not answer on http://$REGISTRY/v2/ (log above)"
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

# ---------------------------------------------------------------- podman
# Why a storage.conf file (CONTAINERS_STORAGE_CONF) and not --root/--storage-opt:
#  - it is exactly what sites do with a published store: name it in
#    additionalimagestores in storage.conf (and what cargohold's snippets write);
#  - --root/--runroot/--storage-driver/--storage-opt on the command line replace
#    storage.conf's driver options wholesale (mount_program, additional stores);
#  - rootless Podman ignores graphroot and has no flag for rootless_storage_path;
#  - the same file makes skopeo's containers-storage: transport see the store.
# A private containers.conf (CONTAINERS_CONF, which replaces all others) pins
# cgroupfs and a file event log, which work with and without systemd, and keeps
# Podman's tmp_dir private too.
#
# Each (mode, user, store) gets a private, initially empty Podman:
#   $WORK/podman/<r|u><key>/          storage.conf, containers.conf, root/ (graphroot)
#   $PODMAN_RUNDIR/<r|u><key>/        runroot (rootful) or XDG_RUNTIME_DIR (rootless)
# The runtime dir lives under a short /run path on purpose: Podman 4.3 passes the
# runroot to conmon's exit command (`podman --runroot X container cleanup`), which
# refuses runroots longer than 50 characters. The cleanup then never runs, the
# container never reaches "exited", and every attached `podman run` hangs 20 s
# on conmon's timeout before returning.

# PODMAN_DRIVER (default overlay) is the storage driver of the store and of the private root.
# _podman_setup MODE STORE [USER]: create the dirs and configs (once) and set
# _PM_DIR (configs + graphroot) and _PM_RUN (runroot / XDG_RUNTIME_DIR).
_podman_setup() {
	local mode=$1 store=$2 user=${3:-} key rootless=0
	[[ -n ${PODMAN_RUNDIR:-} ]] || die "call setup_work first"
	local driver=${PODMAN_DRIVER:-overlay}
	key=$mode$(printf '%s|%s|%s' "$user" "$store" "$driver" | md5sum | cut -c1-6)
	_PM_DIR=$WORK/podman/$key
	_PM_RUN=$PODMAN_RUNDIR/$key
	[[ -f $_PM_DIR/storage.conf ]] && return 0
	[[ $mode == u ]] && rootless=1
	mkdir -p "$_PM_DIR/root" "$_PM_RUN"
	{
		echo '# written by scripts/lib.sh: a private, empty Podman root that reads one store'
		echo '[storage]'
		echo "driver = \"$driver\""
		echo "graphroot = \"$_PM_DIR/root\""
		echo "runroot = \"$_PM_RUN\""
		# Rootless Podman ignores graphroot (and runroot: it uses
		# $XDG_RUNTIME_DIR/containers); this is its graphroot.
		[[ $rootless == 1 ]] && echo "rootless_storage_path = \"$_PM_DIR/root\""
		echo '[storage.options]'
		echo "additionalimagestores = [\"$store\"]"
		# Rootless overlay mounts go through fuse-overlayfs.
		[[ $rootless == 1 && $driver == overlay ]] && printf '[storage.options.overlay]\nmount_program = "/usr/bin/fuse-overlayfs"\n'
	} >"$_PM_DIR/storage.conf"
	{
		echo '[engine]'
		echo 'cgroup_manager = "cgroupfs"'
		echo 'events_logger = "file"'
		# Rootful defaults to /run/libpod, shared by every Podman on the host;
		# rootless uses $XDG_RUNTIME_DIR/libpod/tmp, private already.
		[[ $rootless == 1 ]] || echo "tmp_dir = \"$_PM_RUN/tmp\""
	} >"$_PM_DIR/containers.conf"
	if [[ $rootless == 1 ]]; then
		# XDG_RUNTIME_DIR must belong to the user, mode 0700 (no systemd user session
		# here makes /run/user/UID for us).
		chmod 0700 "$_PM_RUN"
		chown -R "$user:" "$_PM_DIR" "$_PM_RUN"
	fi
}

# _podman_cmd SUBCOMMAND ARGS...: fills _PODMAN_ARGV with the podman command line,
# adding PODMAN_RUN_FLAGS right after run/create. The subcommand must come first.
_podman_cmd() {
	local sub=$1
	shift
	case $sub in
	run | create) _PODMAN_ARGV=(podman "${PODMAN_GLOBAL_FLAGS[@]}" "$sub" "${PODMAN_RUN_FLAGS[@]}" "$@") ;;
	*) _PODMAN_ARGV=(podman "${PODMAN_GLOBAL_FLAGS[@]}" "$sub" "$@") ;;
	esac
}

# podman_store_conf STORE: the storage.conf podman_root uses for STORE (created on
# first use). `CONTAINERS_STORAGE_CONF=$(podman_store_conf S) skopeo ...
# containers-storage:IMAGE ...` reads the store the same way.
podman_store_conf() {
	_podman_setup r "$(realpath -m "$1")"
	echo "$_PM_DIR/storage.conf"
}

# podman_root STORE SUBCOMMAND ARGS...: rootful Podman whose own root is private and
# initially empty and whose only additional image store is STORE.
# Example: podman_root "$STORE" run --rm IMAGE cat /etc/motd
podman_root() {
	local store
	store=$(realpath -m "$1")
	shift
	[[ -d $store ]] || die "podman_root: store $store does not exist"
	_podman_setup r "$store"
	_podman_cmd "$@"
	CONTAINERS_STORAGE_CONF=$_PM_DIR/storage.conf CONTAINERS_CONF=$_PM_DIR/containers.conf "${_PODMAN_ARGV[@]}"
}

# ensure_rootless_user USER: a throwaway user that can run rootless Podman:
# subordinate ID ranges, usable /dev/fuse.
ensure_rootless_user() {
	local user=$1
	if ! id "$user" >/dev/null 2>&1; then
		useradd --create-home --shell /bin/sh --comment "cargohold test user (throwaway)" "$user" ||
			die "useradd $user failed"
	fi
	# Debian's useradd allocates subuid/subgid ranges itself; a user made some other
	# way may have none. Allocate 65536 IDs above every existing range.
	local f start
	for f in /etc/subuid /etc/subgid; do
		touch "$f"
		if ! grep -q "^$user:" "$f"; then
			start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' "$f")
			echo "$user:$start:65536" >>"$f"
		fi
	done
	# fuse-overlayfs runs as the user; Debian's udev makes /dev/fuse 0666, but
	# containers and minimal images often have 0600.
	[[ -c /dev/fuse ]] || modprobe fuse 2>/dev/null || true
	[[ -c /dev/fuse ]] || die "no /dev/fuse: rootless Podman needs FUSE for fuse-overlayfs (modprobe fuse)"
	[[ $(stat -c %a /dev/fuse) == 666 ]] || chmod 0666 /dev/fuse
}

# podman_user USER STORE SUBCOMMAND ARGS...: rootless Podman as USER (created if
# needed) with a private root and STORE as its only additional store. Rootless
# Podman (<= 5.8) ignores the system storage.conf's additionalimagestores, so the
# user's own storage.conf names the store.
podman_user() {
	local user=$1 store home
	store=$(realpath -m "$2")
	shift 2
	ensure_rootless_user "$user"
	_podman_setup u "$store" "$user"
	local images=$store/${PODMAN_DRIVER:-overlay}-images/images.json
	if ! runuser -u "$user" -- test -r "$images"; then
		die "podman_user: $user cannot read $images (every dir up to the store needs a+x, metadata a+r)"
	fi
	home=$(getent passwd "$user" | cut -d: -f6)
	_podman_cmd "$@"
	# runuser keeps the cwd; start from / so Podman never trips over root's cwd.
	(cd / && runuser -u "$user" -- env -i \
		HOME="$home" USER="$user" LOGNAME="$user" \
		PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
		XDG_RUNTIME_DIR="$_PM_RUN" \
		CONTAINERS_STORAGE_CONF="$_PM_DIR/storage.conf" CONTAINERS_CONF="$_PM_DIR/containers.conf" \
		"${_PODMAN_ARGV[@]}")
}

# Rootless Podman leaves a pause process (catatonit) holding its user namespace;
# end each one podman_user started (by its pid file) so a run leaves no processes
# behind. Found via the files, since podman_user may have run in a $(...)
# subshell whose variables are gone.
_podman_user_stop_all() {
	local pidfile pid
	for pidfile in "$PODMAN_RUNDIR"/u*/libpod/tmp/pause.pid; do
		[[ -f $pidfile ]] || continue
		pid=$(cat "$pidfile")
		[[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null
	done
	return 0
}

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

# make_store_readable STORE: Podman writes its store 0700/0600; open the metadata
# (not the layers' files, whose modes are the image's) so other users' Podman can
# read it as an additional store. Only for stores Podman wrote; cargohold's own
# stores are readable as written.
make_store_readable() {
	local s=$1
	chmod a+rx "$s" "$s/overlay" "$s/overlay/l" "$s"/overlay/*/
	chmod a+r "$s"/overlay/*/link
	find "$s"/overlay/ -mindepth 2 -maxdepth 2 -name lower -exec chmod a+r {} +
	chmod -R a+rX "$s/overlay-images" "$s/overlay-layers"
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
