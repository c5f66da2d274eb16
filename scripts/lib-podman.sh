# shellcheck shell=bash
# scripts/lib-podman.sh: the one Podman-reader harness. lib.sh sources it; do not source it
# yourself. See /work/shared/PODMAN-VERSIONS.md (the facts this follows).
#
# A reader is one Podman VERSION (4.3 = the host's; 5.4 and 5.8 from Debian chroots), MODE
# (root; fuse = rootless with fuse-overlayfs; native = rootless with the kernel's overlay;
# rootless = a rootless vfs reader) and DRIVER (overlay, vfs), as root or a throwaway USER,
# with a private, initially empty root whose only additional image store is STORE ("" for
# none: then its own root is where `pull` puts images).
#   pm_reader VERSION MODE DRIVER STORE [USER]   select a reader (configs made on first use,
#                             a chroot built on first use); USER defaults to $PM_USER
#   pm podman|buildah|skopeo|CMD ARGS...   run as the selected reader
#   podman_root STORE ARGS...        `podman ARGS` as the host's root reader of STORE
#                             (driver $PODMAN_DRIVER, default overlay); the selection stays
#   podman_user USER STORE ARGS...   the same as the rootless USER (fuse-overlayfs)
#   podman_store_conf STORE   the storage.conf podman_root uses (for skopeo containers-storage:)
#   pm_containers_conf VERSION [TMPDIR]   the containers.conf every reader gets, for a Podman
#                             run by hand (e2e-conf, bench): cgroupfs, file events, TMPDIR
# What suites check with the selected reader:
#   pm_tree IMAGE TREELIST SINCE   the tree of a container of IMAGE, listed by treelist
#   pm_check_save IMAGE DIFF_IDS   `podman save` of IMAGE has these diff IDs (oci_diff_ids OCIDIR)
# What readers need:
#   ensure_rootless_user USER   a throwaway user with subordinate IDs and usable /dev/fuse
#   make_store_readable STORE [DRIVER]   open a Podman-written store's metadata to others
#   pm_stop_pauses            end the rootless pause processes (setup_work registers it)
# Lower level:
#   pm_exec VERSION USER CMD...   run CMD as USER (root or a rootless user) with Podman
#                             VERSION's binaries, with $WORK, $PODMAN_RUNDIR and PM_BINDS at
#                             the same paths as on the host
#   pm_chroot_build SUITE     create or refresh $PM_CACHE/podman-SUITE (idempotent)
#   pm_versions_build VERSION...   the same for the chroots of these Podman versions, at once
#   pm_chroot_run DIR [HOST=INSIDE]... -- CMD...   run CMD chrooted into a Debian tree (apt-get
#                             works there: the chroot builds, bench-nightly's images)
#   pm_chroot_dir SUITE, pm_version_suite VERSION, pm_podman_version VERSION
#
# Debian 12's Podman is 4.3. Podman 5.4 (Debian trixie) and 5.8 (Debian sid) run from a
# debootstrap chroot each, made from the Debian mirror apt already uses and cached
# between runs (the build takes minutes, a cached one is free).
# PM_CACHE (default /var/cache/cargohold) holds the chroots; it survives between runs
# on a machine that keeps /var/cache. The mirror's host name is never written into
# the repo nor left in a cached chroot (apt sources, lists and logs are removed).

# lib.sh sources this file; a script that sources it again (as scripts did before) changes nothing.
[[ -z ${_LIB_PODMAN_SOURCED:-} ]] || return 0
_LIB_PODMAN_SOURCED=1

# Flags every container run gets (see "Facts about Podman" in DEVELOPERS.md):
#   --runtime runc and the two ulimits: without them Podman 4.3 cannot start
#   containers on our machines (a reader's containers.conf names runc instead of the
#   flag, which buildah would not take).  --net=none: rootless has no working network
#   here; rootful would work without it, but it would set up a bridge and firewall rules
#   on the host, which a test has no business doing.  --pull=never: a test of a
#   store must fail, never fall back to pulling from the registry.
# shellcheck disable=SC2034 # for the scripts that run podman by hand (quickstart, e2e-conf)
PODMAN_GLOBAL_FLAGS=(--runtime runc)
PODMAN_RUN_FLAGS=(--pull=never --net=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

PM_CACHE=${PM_CACHE:-/var/cache/cargohold}
# What a chroot gets besides debootstrap's minbase: Podman and what it runs with.
PM_CHROOT_PACKAGES=(podman buildah skopeo fuse-overlayfs crun runc uidmap conmon netavark passt
	catatonit ca-certificates iptables)
# Bump when the way a chroot is built changes, so cached ones get rebuilt.
PM_CHROOT_RECIPE=1
# Extra NAME=VALUE environment for pm_exec (pm_reader sets it).
PM_ENV=()
# The rootless readers' user, unless pm_reader is told another.
PM_USER=${PM_USER:-cargotest}
# Host dirs besides $WORK and $PODMAN_RUNDIR that a chroot's Podman must see (same paths).
PM_BINDS=()

pm_version_suite() {
	case $1 in
	4.3) echo "" ;;
	5.4) echo trixie ;;
	5.8) echo sid ;;
	*) die "unknown Podman version $1 (known: 4.3 5.4 5.8)" ;;
	esac
}

pm_chroot_dir() { echo "$PM_CACHE/podman-$1"; }

# pm_mirror: the Debian mirror apt uses here (first deb URI of the main archive).
pm_mirror() {
	local url=
	if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
		url=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
	fi
	if [[ -z $url && -r /etc/apt/sources.list ]]; then
		url=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
	fi
	[[ -n $url ]] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
	echo "$url"
}

# _pm_stamp SUITE: what a finished chroot records; a different one means rebuild.
_pm_stamp() { echo "recipe=$PM_CHROOT_RECIPE suite=$1 packages=${PM_CHROOT_PACKAGES[*]}"; }

# pm_chroot_build SUITE: make $PM_CACHE/podman-SUITE unless it is there with the
# same stamp. Built in a temp dir and renamed into place when complete, so a build
# that crashes never leaves a chroot that looks done; one build per suite at a time.
pm_chroot_build() {
	local suite=$1 dir tmp
	dir=$(pm_chroot_dir "$suite")
	mkdir -p "$PM_CACHE"
	chmod 0755 "$PM_CACHE"
	(
		flock 9
		if [[ -f $dir/.cargohold-stamp && $(cat "$dir/.cargohold-stamp") == "$(_pm_stamp "$suite")" ]]; then
			exit 0
		fi
		require_cmds debootstrap
		local stale
		for stale in "$dir".tmp.*; do
			[[ -d $stale ]] && _pm_remove_tree "$stale"
		done
		tmp=$dir.tmp.$$
		log "building the Podman chroot $dir (Debian $suite; takes minutes)"
		_pm_debootstrap "$suite" "$tmp" || {
			_pm_remove_tree "$tmp"
			die "building the $suite chroot failed (log above)"
		}
		_pm_stamp "$suite" >"$tmp/.cargohold-stamp"
		[[ -d $dir ]] && _pm_remove_tree "$dir"
		mv "$tmp" "$dir"
		log "chroot $dir ready: podman $(chroot "$dir" dpkg-query -W -f '${Version}' podman)"
	) 9>"$PM_CACHE/podman-$suite.lock"
}

# pm_versions_build VERSION...: build (or check) the chroots of these Podman versions at the same
# time (minutes each on a fresh machine, free once cached); the host's 4.3 needs none.
pm_versions_build() {
	local v suite pid builds=()
	for v in "$@"; do
		suite=$(pm_version_suite "$v")
		[[ -z $suite ]] || {
			pm_chroot_build "$suite" &
			builds+=($!)
		}
	done
	for pid in "${builds[@]}"; do wait "$pid" || die "building a Podman chroot failed (log above)"; done
}

# _pm_debootstrap SUITE DIR: the build itself (any failure returns non-zero).
_pm_debootstrap() {
	local suite=$1 tmp=$2 mirror rc=0
	mirror=$(pm_mirror)
	debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >&2 || return 1
	# A mirror that is a dated snapshot serves sid's Release past its Valid-Until:
	# apt-get then refuses it (debootstrap does not check).
	pm_chroot_run "$tmp" -- env DEBIAN_FRONTEND=noninteractive \
		sh -ec 'apt-get -o Acquire::Check-Valid-Until=false update -q && apt-get install -y -q --no-install-recommends "$@" && apt-get clean' sh \
		"${PM_CHROOT_PACKAGES[@]}" >&2 || rc=1
	# Nothing cached may name the mirror: apt's sources, lists and logs go.
	rm -rf "$tmp"/etc/apt/sources.list "$tmp"/etc/apt/sources.list.d/* "$tmp"/var/lib/apt/lists \
		"$tmp"/var/log/apt "$tmp"/var/log/bootstrap.log "$tmp"/var/cache/apt/*.bin "$tmp"/debootstrap
	mkdir -p "$tmp/var/lib/apt/lists/partial"
	return "$rc"
}

# pm_chroot_run DIR [HOST=INSIDE]... -- CMD...: run CMD chrooted into the tree at DIR with /proc,
# /dev and /sys (apt-get needs them) and each HOST path bind-mounted at INSIDE, a path in the tree
# (a missing one is made: a dir for a dir, an empty file for a file). A private mount namespace
# unmounts them all by itself: the tree keeps none of them. (No user namespaces in there: readers run
# through pm_exec.)
pm_chroot_run() {
	local dir=$1
	shift
	unshare --mount --propagation private -- sh -ec '
		root=$1
		shift
		mount -t proc proc "$root/proc"
		mount --rbind /dev "$root/dev"
		mount --rbind /sys "$root/sys"
		while [ "$1" != -- ]; do
			host=${1%%=*} inside=$root${1#*=}
			if [ -d "$host" ]; then mkdir -p "$inside"; else [ -e "$inside" ] || touch "$inside"; fi
			mount --bind "$host" "$inside"
			shift
		done
		shift
		exec chroot "$root" "$@"' sh "$dir" "$@"
}

# _pm_remove_tree DIR: remove a chroot, even one a crashed build left with mounts.
_pm_remove_tree() {
	_unmount_under "$1"
	rm -rf --one-file-system "$1"
}

# ---------------------------------------------------------------- running a version
# Why not plain chroot: the kernel refuses user namespaces (rootless Podman) to a
# chrooted process ("cannot clone: Operation not permitted"), so the chroot becomes
# the root of a private mount namespace (pivot_root). Inside: /proc, /sys, /dev,
# tmpfs /run and /tmp, then the host dirs the tests share (work dir, Podman runtime
# dirs, the user's home) at their own paths, and the host's user database (the same
# uids and subordinate ranges inside as outside). crun (5.x's runtime) refuses this
# machine's hybrid cgroups while /sys/fs/cgroup/unified is mounted.
# shellcheck disable=SC2016 # expanded by the inner shell
_PM_ENTER='set -e
root=$1
shift
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
while [ "$1" != -- ]; do
	(umask 022 && mkdir -p "$root$1") # parents a rootless reader can pass (they stay in the cached chroot)
	mount --rbind "$1" "$root$1"
	shift
done
shift
for f in passwd group subuid subgid; do
	[ -e "$root/etc/$f" ] || : >"$root/etc/$f"
	mount --bind "/etc/$f" "$root/etc/$f"
done
cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
mount --make-rshared /
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
exec "$@"'

# pm_exec VERSION USER CMD...: run CMD with Podman VERSION's binaries as USER (root or
# a rootless user, whose environment is then reset to HOME, USER, PATH and the
# variables named in PM_ENV, an array of NAME=VALUE).
pm_exec() {
	local version=$1 user=$2 suite
	shift 2
	suite=$(pm_version_suite "$version")
	local -a cmd=(env "${PM_ENV[@]}" "$@")
	if [[ $user != root ]]; then
		local uid gid home
		uid=$(id -u "$user") gid=$(id -g "$user") home=$(getent passwd "$user" | cut -d: -f6)
		cmd=(setpriv --reuid="$uid" --regid="$gid" --init-groups -- env -i HOME="$home" USER="$user" LOGNAME="$user"
			PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "${PM_ENV[@]}" "$@")
	fi
	if [[ -z $suite ]]; then
		(cd / && "${cmd[@]}")
		return
	fi
	local dir binds=("$WORK" "$PODMAN_RUNDIR" "${PM_BINDS[@]}")
	dir=$(pm_chroot_dir "$suite")
	[[ -f $dir/.cargohold-stamp ]] || die "no Podman $version chroot at $dir: call pm_chroot_build $suite first"
	[[ $user == root ]] || binds+=("$(getent passwd "$user" | cut -d: -f6)")
	unshare --mount --propagation private -- sh -c "$_PM_ENTER" sh "$dir" "${binds[@]}" -- "${cmd[@]}"
}

# pm_podman_version VERSION: what `podman --version` says for VERSION (a smoke test).
pm_podman_version() {
	local PM_ENV=()
	pm_exec "$1" root podman --version
}


# ---------------------------------------------------------------- readers
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
# Each reader gets its own dirs:
#   $WORK/pm/<key>/             storage.conf, containers.conf, root/ (graphroot), tmp/ (TMPDIR)
#   $PODMAN_RUNDIR/<key>/       XDG_RUNTIME_DIR; storage/ the runroot, tmp/ Podman's tmp_dir
# The runtime dir lives under a short /run path on purpose: Podman 4.3 passes the
# runroot to conmon's exit command (`podman --runroot X container cleanup`), which
# refuses runroots longer than 50 characters. The cleanup then never runs, the
# container never reaches "exited", and every attached `podman run` hangs 20 s
# on conmon's timeout before returning.

# pm_reader VERSION MODE DRIVER STORE [USER]: select a reader; sets PM_VERSION, PM_MODE,
# PM_RUN_AS (root or the user), PM_DIR, PM_RUN and PM_ENV for `pm`.
pm_reader() {
	local version=$1 mode=$2 driver=$3 store=$4 user=root key
	[[ -n ${PODMAN_RUNDIR:-} ]] || die "pm_reader: call setup_work first"
	case $mode in
	root) ;;
	fuse | native | rootless) user=${5:-$PM_USER} ;;
	*) die "pm_reader: unknown mode $mode (root, fuse, native, rootless)" ;;
	esac
	[[ -z $store ]] || store=$(realpath -m "$store")
	key=$(printf '%s|%s|%s|%s|%s' "$version" "$mode" "$driver" "$store" "$user" | md5sum | cut -c1-8)
	# shellcheck disable=SC2034 # PM_MODE is for the caller
	PM_VERSION=$version PM_MODE=$mode PM_RUN_AS=$user
	PM_DIR=$WORK/pm/$key
	PM_RUN=$PODMAN_RUNDIR/$key
	PM_ENV=(CONTAINERS_STORAGE_CONF="$PM_DIR/storage.conf" CONTAINERS_CONF="$PM_DIR/containers.conf"
		XDG_RUNTIME_DIR="$PM_RUN" TMPDIR="$PM_DIR/tmp"
		# 5.x warns on every command that this machine's cgroups v1 are deprecated.
		PODMAN_IGNORE_CGROUPSV1_WARNING=1)
	# Podman fails every command while an additional store does not exist; a rootless
	# reader that cannot read the records silently lists nothing.
	[[ -z $store || -d $store ]] || die "pm_reader: store $store does not exist"
	[[ -f $PM_DIR/storage.conf ]] || _pm_reader_setup "$mode" "$driver" "$store"
	if [[ -n $store && $user != root ]] &&
		! setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups -- test -r "$store/$driver-images/images.json"; then
		die "pm_reader: $user cannot read $store/$driver-images/images.json (every dir up to the store needs a+x, metadata a+r)"
	fi
}

# _pm_reader_setup MODE DRIVER STORE: the selected reader's chroot, user, dirs and configs.
_pm_reader_setup() {
	local suite user=$PM_RUN_AS tmp=.tmp.$BASHPID
	suite=$(pm_version_suite "$PM_VERSION")
	[[ -z $suite ]] || pm_chroot_build "$suite"
	[[ $user == root ]] || ensure_rootless_user "$user"
	mkdir -p "$PM_DIR/root" "$PM_DIR/tmp" "$PM_RUN"
	if [[ $user != root ]]; then
		# XDG_RUNTIME_DIR must belong to the user, mode 0700 (no systemd user session
		# here makes /run/user/UID for us).
		chmod 0700 "$PM_RUN"
		chown -R "$user:" "$PM_DIR" "$PM_RUN"
	fi
	# Readers of one store may start in parallel loops: each writes its own temp files and
	# renames them into place, storage.conf last (a reader whose storage.conf exists is complete).
	pm_containers_conf "$PM_VERSION" "$PM_RUN/tmp" >"$PM_DIR/containers.conf$tmp"
	_pm_storage_conf "$@" >"$PM_DIR/storage.conf$tmp"
	mv "$PM_DIR/containers.conf$tmp" "$PM_DIR/containers.conf"
	mv "$PM_DIR/storage.conf$tmp" "$PM_DIR/storage.conf"
}

# _pm_storage_conf MODE DRIVER STORE: a reader's storage.conf, the way a site writes one.
_pm_storage_conf() {
	local mode=$1 driver=$2 store=$3
	echo '# written by scripts/lib-podman.sh: a private, empty Podman root that reads one store'
	echo '[storage]'
	echo "driver = \"$driver\""
	echo "graphroot = \"$PM_DIR/root\""
	echo "runroot = \"$PM_RUN/storage\""
	# Rootless 4.3 and 5.4 ignore graphroot; 5.8 takes it and warns on every command
	# that rootless_storage_path is deprecated.
	[[ $mode == root || $PM_VERSION == 5.8 ]] || echo "rootless_storage_path = \"$PM_DIR/root\""
	echo '[storage.options]'
	[[ -z $store ]] || echo "additionalimagestores = [\"$store\"]"
	[[ $mode == fuse && $driver == overlay ]] && printf '[storage.options.overlay]\nmount_program = "/usr/bin/fuse-overlayfs"\n'
	return 0
}

# pm_containers_conf VERSION [TMPDIR]: a private containers.conf. Rootful Podman's tmp_dir
# defaults to /run/libpod, shared by every Podman on the host; rootless Podman's
# ($XDG_RUNTIME_DIR/libpod/tmp) is private already (no TMPDIR: a file several users share).
pm_containers_conf() {
	echo '[engine]'
	echo 'cgroup_manager = "cgroupfs"'
	echo 'events_logger = "file"'
	[[ -z ${2:-} ]] || echo "tmp_dir = \"$2\""
	# Podman and Buildah 4.3 cannot start containers with crun here (PODMAN_GLOBAL_FLAGS).
	if [[ $1 == 4.3 ]]; then echo 'runtime = "runc"'; fi
}

# pm TOOL ARGS...: run TOOL as the selected reader. Podman 4.3 needs runc (the
# reader's containers.conf names it) and the two ulimits (PODMAN_RUN_FLAGS);
# `buildah from` in the chroots needs the nofile ulimit, `buildah run` no network
# (nftables fails here).
pm() {
	local tool=$1
	shift
	local -a argv=("$tool")
	case $tool in
	podman)
		case ${1:-} in
		run | create) argv+=("$1" "${PODMAN_RUN_FLAGS[@]}") && shift ;;
		esac
		;;
	buildah)
		case ${1:-} in
		from) argv+=(from --ulimit nofile=1024:1024 --ulimit nproc=1024:1024) && shift ;;
		run) argv+=(run --network none) && shift ;;
		esac
		;;
	esac
	pm_exec "$PM_VERSION" "$PM_RUN_AS" "${argv[@]}" "$@"
}

# podman_root STORE SUBCOMMAND ARGS...: the host's Podman as root, with a private,
# initially empty root and STORE as its only additional image store. Runs in a
# subshell: the caller's pm_reader selection stays.
# Example: podman_root "$STORE" run --rm IMAGE cat /etc/motd
podman_root() {
	(
		pm_reader 4.3 root "${PODMAN_DRIVER:-overlay}" "$1"
		shift
		pm podman "$@"
	)
}

# podman_user USER STORE SUBCOMMAND ARGS...: the same as the rootless USER (created if
# needed; an overlay store through fuse-overlayfs). Rootless Podman (<= 5.8) ignores the
# system storage.conf's additionalimagestores, so the reader's own storage.conf names it.
podman_user() {
	(
		pm_reader 4.3 fuse "${PODMAN_DRIVER:-overlay}" "$2" "$1"
		shift 2
		pm podman "$@"
	)
}

# podman_store_conf STORE: the storage.conf podman_root uses for STORE (created on
# first use). `CONTAINERS_STORAGE_CONF=$(podman_store_conf S) skopeo ...
# containers-storage:IMAGE ...` reads the store the same way.
podman_store_conf() {
	pm_reader 4.3 root "${PODMAN_DRIVER:-overlay}" "$1"
	echo "$PM_DIR/storage.conf"
}

# ---------------------------------------------------------------- what suites check with a reader
# pm_tree IMAGE TREELIST SINCE: TREELIST's listing (internal/testimage/cmd/treelist: type, mode,
# owner, size, mtime, nlink, rdev, link target, sha256, xattrs of every path) of the mounted root of
# a container of IMAGE that the selected reader creates (not starts); dirs with mtimes from SINCE
# (seconds since the epoch) on are listed as "unpacked" (the implied dirs the unpacking made).
pm_tree() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	local script='set -e
		c=$(podman create --pull=never --net=none "$1" /bin/true)
		m=$(podman mount "$c")
		rc=0
		"$2" -unpacked-after "$3" "$m" || rc=$?
		podman umount "$c" >/dev/null
		podman rm "$c" >/dev/null
		exit $rc'
	if [[ $PM_RUN_AS == root ]]; then
		pm sh -c "$script" sh "$@"
	else
		pm podman unshare sh -c "$script" sh "$@"
	fi
}

# oci_diff_ids OCIDIR: the diff IDs of the layers of an OCI layout's only image (the sha256 of each
# layer, uncompressed), one a line. A blob's compression is told by its first bytes, not by its media
# type: `skopeo copy --dest-oci-accept-uncompressed-layers` writes uncompressed blobs under the gzip
# type of the source.
oci_diff_ids() {
	local dir=$1 manifest digest blob magic
	manifest=$dir/$(jq -r '.manifests[0].digest' "$dir/index.json" | sed 's#sha256:#blobs/sha256/#')
	jq -r '.layers[].digest' "$manifest" | while read -r digest; do
		blob=$dir/blobs/sha256/${digest#sha256:}
		magic=$(head -c 4 "$blob" | od -An -tx1 | tr -d ' \n')
		case $magic in
		1f8b*) gzip -dc ;;
		28b52ffd) zstd -qdc ;;
		*) cat ;;
		esac <"$blob" | sha256sum | sed 's/^/sha256:/; s/ .*//'
	done
}

# pm_check_save IMAGE DIFF_IDS: `podman save` of IMAGE by the selected reader, as an OCI dir
# (docker-archive cannot hold zstd on 4.3; an OCI dir gets gzip layers), has the layers DIFF_IDS
# (one a line, as the registry's config lists them); else it prints what it has and returns non-zero.
pm_check_save() {
	local dir=$PM_DIR/tmp/save got
	rm -rf "$dir"
	pm podman save --format oci-dir -o "$dir" "$1" || return 1
	got=$(oci_diff_ids "$dir")
	rm -rf "$dir"
	[[ $got == "$2" ]] || {
		echo "saved layers $(tr '\n' ' ' <<<"$got"), diff IDs $(tr '\n' ' ' <<<"$2")"
		return 1
	}
}

# ---------------------------------------------------------------- what readers need
# ensure_rootless_user USER: a throwaway user that can run rootless Podman:
# subordinate ID ranges, usable /dev/fuse. The same uid and ranges hold in the
# chroots (pm_exec binds the host's user database over theirs).
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

# make_store_readable STORE [DRIVER]: Podman writes its store 0700/0600; open the store's
# own dirs and records (driver default overlay) so other users' Podman can read it as an
# additional store. Not a layer's diff/ (overlay) or vfs/dir/<id>: that is the image's
# root and keeps its mode. Only for stores Podman wrote (and again after a root reader's
# containers rewrote its records 0600); cargohold's own stores are readable as written.
make_store_readable() {
	local d=$1 driver=${2:-overlay}
	chmod a+rx "$d" "$d/$driver" "$d/$driver-images" "$d/$driver-layers"
	if [[ $driver == overlay ]]; then
		find "$d/overlay" -mindepth 1 -maxdepth 1 -type d -exec chmod a+rx {} +
		find "$d/overlay" -mindepth 2 -maxdepth 2 \( -name link -o -name lower \) -exec chmod a+r {} +
	else
		chmod a+rx "$d/vfs/dir"
	fi
	chmod -R a+rX "$d/$driver-images" "$d/$driver-layers"
}

# pm_stop_pauses: rootless Podman leaves a pause process (catatonit) holding its user
# namespace; end each one a reader left, found by its pid file under $PODMAN_RUNDIR
# (readers may have run in $(...) subshells whose variables are gone).
pm_stop_pauses() {
	local f pid
	while IFS= read -r f; do
		pid=$(cat "$f")
		[[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null
	done < <(find "$PODMAN_RUNDIR" -name pause.pid 2>/dev/null)
	return 0
}
