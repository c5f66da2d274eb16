# shellcheck shell=bash
# scripts/lib-podman.sh: newer Podman versions next to the host's, for scripts/e2e-matrix.
# Source it after lib.sh. See /work/shared/PODMAN-VERSIONS.md (the facts this follows).
#
# Debian 12's Podman is 4.3. Podman 5.4 (Debian trixie) and 5.8 (Debian sid) run from a
# debootstrap chroot each, made from the Debian mirror apt already uses and cached
# between runs (the build takes minutes, a cached one is free):
#   pm_chroot_build SUITE     create or refresh $PM_CACHE/podman-SUITE (idempotent)
#   pm_chroot_dir SUITE       its path
#   pm_exec VERSION USER CMD...   run CMD as USER (root or the rootless test user) with
#                             Podman VERSION (4.3 = the host, 5.4, 5.8), with $WORK,
#                             $PODMAN_RUNDIR and PM_BINDS at the same paths as on the host
#   pm_version_suite VERSION  the Debian suite of a version ("" for the host)
#
# PM_CACHE (default /var/cache/cargohold) holds the chroots; it survives between runs
# on a machine that keeps /var/cache. The mirror's host name is never written into
# the repo nor left in a cached chroot (apt sources, lists and logs are removed).

PM_CACHE=${PM_CACHE:-/var/cache/cargohold}
# What a chroot gets besides debootstrap's minbase: Podman and what it runs with.
PM_CHROOT_PACKAGES=(podman buildah skopeo fuse-overlayfs crun runc uidmap conmon netavark passt
	catatonit ca-certificates iptables)
# Bump when the way a chroot is built changes, so cached ones get rebuilt.
PM_CHROOT_RECIPE=1
# Extra NAME=VALUE environment for pm_exec (pm_reader sets it).
PM_ENV=()
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

# _pm_debootstrap SUITE DIR: the build itself (any failure returns non-zero).
_pm_debootstrap() {
	local suite=$1 tmp=$2 mirror rc=0
	mirror=$(pm_mirror)
	debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >&2 || return 1
	# A mirror that is a dated snapshot serves sid's Release past its Valid-Until:
	# apt-get then refuses it (debootstrap does not check).
	# apt-get needs /proc, /dev and /sys; a private namespace unmounts them by itself.
	unshare --mount --propagation private -- sh -ec '
		mount -t proc proc "$1/proc"
		mount --rbind /dev "$1/dev"
		mount --rbind /sys "$1/sys"
		shift
		exec chroot "$@"' sh "$tmp" "$tmp" env DEBIAN_FRONTEND=noninteractive \
		sh -ec 'apt-get -o Acquire::Check-Valid-Until=false update -q && apt-get install -y -q --no-install-recommends "$@" && apt-get clean' sh \
		"${PM_CHROOT_PACKAGES[@]}" >&2 || rc=1
	# Nothing cached may name the mirror: apt's sources, lists and logs go.
	rm -rf "$tmp"/etc/apt/sources.list "$tmp"/etc/apt/sources.list.d/* "$tmp"/var/lib/apt/lists \
		"$tmp"/var/log/apt "$tmp"/var/log/bootstrap.log "$tmp"/var/cache/apt/*.bin "$tmp"/debootstrap
	mkdir -p "$tmp/var/lib/apt/lists/partial"
	return "$rc"
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
	mkdir -p "$root$1"
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

# pm_stop_pauses: end the rootless pause processes (catatonit) the readers left, found
# by their pid files under $PODMAN_RUNDIR (a reader's tmp_dir is there).
pm_stop_pauses() {
	local f pid
	while IFS= read -r f; do
		pid=$(cat "$f")
		[[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null
	done < <(find "$PODMAN_RUNDIR" -name pause.pid 2>/dev/null)
	return 0
}

# pm_podman_version VERSION: what `podman --version` says for VERSION (a smoke test).
pm_podman_version() {
	local PM_ENV=()
	pm_exec "$1" root podman --version
}

# ---------------------------------------------------------------- readers
# A reader is one Podman VERSION, MODE (root; fuse = rootless with fuse-overlayfs;
# native = rootless with the kernel's overlay) and DRIVER, with a private, initially
# empty root and STORE as its only additional image store ("" for none: then its own
# root is where `pull` puts images, the reference a store is compared with).
#   pm_reader VERSION MODE DRIVER STORE   select one (configs made on first use)
#   pm podman|buildah|skopeo|CMD ARGS...  run as the selected reader
# PM_USER names the rootless user (default cargotest).
PM_USER=${PM_USER:-cargotest}

pm_reader() {
	local version=$1 mode=$2 driver=$3 store=$4 key user=root
	[[ $mode == root ]] || user=$PM_USER
	key=$(printf '%s|%s|%s|%s' "$version" "$mode" "$driver" "$store" | md5sum | cut -c1-8)
	# shellcheck disable=SC2034 # PM_MODE is for the caller
	PM_VERSION=$version PM_MODE=$mode PM_RUN_AS=$user
	PM_DIR=$WORK/pm/$key
	PM_RUN=$PODMAN_RUNDIR/$key
	PM_ENV=(CONTAINERS_STORAGE_CONF="$PM_DIR/storage.conf" CONTAINERS_CONF="$PM_DIR/containers.conf"
		XDG_RUNTIME_DIR="$PM_RUN" TMPDIR="$PM_DIR/tmp"
		# 5.x warns on every command that this machine's cgroups v1 are deprecated.
		PODMAN_IGNORE_CGROUPSV1_WARNING=1)
	[[ -f $PM_DIR/storage.conf ]] && return 0
	[[ $user == root ]] || ensure_rootless_user "$user"
	mkdir -p "$PM_DIR/root" "$PM_DIR/tmp" "$PM_RUN"
	_pm_storage_conf "$mode" "$driver" "$store" >"$PM_DIR/storage.conf"
	{
		echo '[engine]'
		echo 'cgroup_manager = "cgroupfs"'
		echo 'events_logger = "file"'
		echo "tmp_dir = \"$PM_RUN/tmp\""
		# Podman and Buildah 4.3 cannot start containers with crun here (lib.sh).
		if [[ $version == 4.3 ]]; then echo 'runtime = "runc"'; fi
	} >"$PM_DIR/containers.conf"
	if [[ $user != root ]]; then
		chmod 0700 "$PM_RUN"
		chown -R "$user:" "$PM_DIR" "$PM_RUN"
	fi
}

# _pm_storage_conf MODE DRIVER STORE: a reader's storage.conf, the way a site writes
# one (see lib.sh's podman section for why a file and not flags).
_pm_storage_conf() {
	local mode=$1 driver=$2 store=$3
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

# pm TOOL ARGS...: run TOOL as the selected reader. Podman 4.3 needs runc (the
# reader's containers.conf names it) and the two ulimits (lib.sh's PODMAN_RUN_FLAGS);
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
