# shellcheck shell=bash
# scripts/lib-cvmfs.sh: what scripts/e2e-cvmfs (stand-in) and scripts/e2e-cvmfs-real (a real
# stratum-0) share. Source it after lib.sh.

_sha256() { sha256sum "$@" | cut -d' ' -f1; }

# make_xdir_image: push $REGISTRY/cargotest/xdir:1 (after make_fixtures wrote hello:1): hello:1
# plus a layer whose /usr/bin/tool (setuid, with a user.note xattr) has hard links in the same
# directory (tool-same-dir), in another one (usr/sbin/tool) and twice in a third
# (usr/libexec/tool/a and b), as packages like git have. Sets XDIR_DIFF_ID, that layer's diff ID.
make_xdir_image() {
	local src dst=$WORK/xdir-layout t=$WORK/xdir-tree man mf cfg diffid ld lsize newcfg cd csize newman md msize
	src=$(fixture hello:1 .layout)
	mkdir -p "$t/usr/bin" "$t/usr/sbin" "$t/usr/libexec/tool" "$dst/blobs/sha256"
	printf 'tool v1\n' >"$t/usr/bin/tool"
	chmod 4755 "$t/usr/bin/tool"
	setfattr -n user.note -v kept "$t/usr/bin/tool"
	ln "$t/usr/bin/tool" "$t/usr/bin/tool-same-dir"
	ln "$t/usr/bin/tool" "$t/usr/sbin/tool"
	ln "$t/usr/bin/tool" "$t/usr/libexec/tool/a"
	ln "$t/usr/bin/tool" "$t/usr/libexec/tool/b"
	# --sort=name: usr/bin/tool is archived first, the other names as hard links to it.
	tar --create --file "$WORK/xdir.tar" --directory "$t" --sort=name --xattrs --xattrs-include='user.*' \
		--numeric-owner --owner=0 --group=0 --mtime=@1700000000 usr
	gzip -n -c "$WORK/xdir.tar" >"$WORK/xdir.tar.gz"
	diffid=sha256:$(_sha256 "$WORK/xdir.tar")
	ld=sha256:$(_sha256 "$WORK/xdir.tar.gz")
	lsize=$(stat -c %s "$WORK/xdir.tar.gz")
	cp "$src"/blobs/sha256/* "$dst/blobs/sha256/"
	cp "$WORK/xdir.tar.gz" "$dst/blobs/sha256/${ld#sha256:}"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$dst/oci-layout"
	man=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "1") | .digest' "$src/index.json")
	mf=$src/blobs/sha256/${man#sha256:}
	cfg=$src/blobs/sha256/$(jq -r '.config.digest' "$mf" | cut -d: -f2)
	newcfg=$WORK/xdir-config.json
	jq -c --arg d "$diffid" '.rootfs.diff_ids += [$d] | .history += [{"created_by": "e2e-cvmfs: hard links across directories"}]' "$cfg" >"$newcfg"
	cd=sha256:$(_sha256 "$newcfg")
	csize=$(stat -c %s "$newcfg")
	cp "$newcfg" "$dst/blobs/sha256/${cd#sha256:}"
	newman=$WORK/xdir-manifest.json
	jq -c --arg cd "$cd" --argjson cs "$csize" --arg ld "$ld" --argjson ls "$lsize" \
		'.config.digest = $cd | .config.size = $cs | .layers += [{"mediaType": .layers[0].mediaType, "digest": $ld, "size": $ls}]' "$mf" >"$newman"
	md=sha256:$(_sha256 "$newman")
	msize=$(stat -c %s "$newman")
	cp "$newman" "$dst/blobs/sha256/${md#sha256:}"
	jq -n --arg md "$md" --argjson ms "$msize" --arg mt "$(jq -r .mediaType "$newman")" \
		'{"schemaVersion": 2, "manifests": [{"mediaType": $mt, "digest": $md, "size": $ms, "annotations": {"org.opencontainers.image.ref.name": "1"}}]}' >"$dst/index.json"
	skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$dst:1" "docker://$REGISTRY/cargotest/xdir:1" ||
		die "pushing the xdir image failed"
	export XDIR_DIFF_ID=$diffid # read by the suites
}

# wrapped LOGNAME [REPO=name] ARGS...: scripts/cvmfs-publish $REPO (or name) ARGS, output in
# $WORK/LOGNAME.log; sets RC.
wrapped() {
	local name=$1 target=$REPO
	shift
	if [[ ${1:-} == REPO=* ]]; then
		target=${1#REPO=}
		shift
	fi
	log "cvmfs-publish $target $* (log: $WORK/$name.log)"
	RC=0
	"$CARGOHOLD_ROOT/scripts/cvmfs-publish" "$target" "$@" >"$WORK/$name.log" 2>&1 || RC=$?
}

# make_held_server NAME VERB HOLD [SERVER]: $WORK/bin/NAME, the cvmfs_server SERVER (default
# $SERVER_CMD) with its VERB held back, a window to signal cargohold (and its cvmfs_server) in:
#   HOLD=start  VERB starts 3 s late;
#   HOLD=input  VERB (an ingest) starts at once but gets its tar only a minute after it opened its
#               transaction.
# Once it holds, the wrapper writes its pid to $WORK/NAME.held: cvmfs_server's process group
# (cargohold starts cvmfs_server in a group of its own).
make_held_server() {
	local name=$1 verb=$2 hold=$3 server=${4:-$SERVER_CMD} held=$WORK/$1.held lock
	case $hold in
	start) hold="echo \$\$ >\"$held\"; sleep 3" ;;
	input)
		lock=/var/spool/cvmfs/$REPO/in_transaction.lock
		hold="{ until [[ -e $lock ]]; do sleep 0.1; done; echo \$\$ >\"$held\"; sleep 60; cat; } | \"$server\" \"\$@\"; exit"
		;;
	*) die "make_held_server: HOLD is start or input, not $hold" ;;
	esac
	rm -f "$held"
	cat >"$WORK/bin/$name" <<EOF
#!/bin/bash
if [[ \$1 == $verb ]]; then
	$hold
fi
exec "$server" "\$@"
EOF
	chmod +x "$WORK/bin/$name"
}

# children_of PID: the pids of PID's children.
# (cat, not awk FILES: mawk stops at a process that ended since the glob.)
children_of() { { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v p="$1" '$4 == p { print $1 }'; }

# hang_listener: a "registry" on 127.0.0.1:$HANG_PORT that accepts connections and never answers: a
# fetch from it hangs. Sets HANG_PORT and NC_PID; stopped at exit.
hang_listener() {
	HANG_PORT=$(free_port)
	busybox nc -ll -p "$HANG_PORT" -e sleep 300 &
	NC_PID=$!
	# The sleeps nc starts per connection are its children: end them by their ids, then nc.
	on_exit "kill \$(children_of $NC_PID) $NC_PID 2>/dev/null || true"
}

# fetch_begun [N]: a fetch from the hang listener has begun: more than N (default 0) connections are
# open (those of earlier fetches stay open until the listener ends).
fetch_begun() { (($(children_of "$NC_PID" | wc -l) > ${1:-0})); }

# wait_until WHAT COMMAND...: poll COMMAND for up to 3 minutes (a busy machine); dies naming WHAT
# if it never succeeds.
wait_until() {
	local what=$1 i
	shift
	for ((i = 0; i < 1800; i++)); do
		"$@" && return
		sleep 0.1
	done
	die "waited 3 minutes for: $what"
}

# start_publish LOGNAME ARGS...: scripts/cvmfs-publish $REPO ARGS in the background, output in
# $WORK/LOGNAME.log; sets PUB_PID (the wrapper execs cargohold: cargohold's pid).
start_publish() {
	local name=$1
	shift
	log "cvmfs-publish $REPO $* & (log: $WORK/$name.log)"
	"$CARGOHOLD_ROOT/scripts/cvmfs-publish" "$REPO" "$@" >"$WORK/$name.log" 2>&1 &
	PUB_PID=$!
}

# marker JQ: a field of cargohold's transaction marker ($MARKER).
marker() { jq -r "$1" "$MARKER" 2>&1; }

# group_alive PGID: a process of group PGID runs (zombies, which a PID 1 that does not reap leaves, apart).
group_alive() { { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v g="$1" '$5 == g && $3 !~ /^[ZX]$/ { found = 1 } END { exit !found }'; }


# kill_steps: the SIGKILL checks both suites run (e2e-cvmfs's section 13, e2e-cvmfs-real's A4), in
# stores of their own below /cvmfs/$REPO. The suite sets REPO, MARKER (cargohold's transaction
# marker), SERVER_CMD (the cvmfs_server to wrap: the stand-in or the real one) and calls
# hang_listener first, and provides revision, in_transaction, img and wrapped LOGNAME ARGS (sets RC).
# Fixtures hello:1, app:1 and app:2 must be in the registry.
kill_steps() {
	local rev pid group
	local vstore=/cvmfs/$REPO/kill-vfs vview=/var/spool/cvmfs/$REPO/rdonly/kill-vfs
	local ostore=/cvmfs/$REPO/kill-overlay oview=/var/spool/cvmfs/$REPO/rdonly/kill-overlay
	local hello="Hello from a cargohold store: this image ran without a pull."
	local app_view='test -e /data/deleted.txt && echo present || echo gone; ls /data/opq; cat /data/keep.txt'
	onames() { podman_root "$oview" images --format '{{.Repository}}:{{.Tag}}' 2>&1 | LC_ALL=C sort | paste -sd' ' -; }

	log "kill -9 of cargohold inside a vfs store's transaction (a hung fetch)"
	wrapped kill-vfs-1 --store "$vstore" --driver vfs --tls-verify=false "docker://$(img hello:1)"
	check_eq "a vfs store with hello:1 publishes (exit 0)" 0 "$RC"
	rev=$(revision)
	local conns
	conns=$(children_of "$NC_PID" | wc -l)
	start_publish kill-vfs-2 --store "$vstore" --tls-verify=false "docker://127.0.0.1:$HANG_PORT/hang:1"
	wait_until "the fetch of hang:1" fetch_begun "$conns"
	kill -KILL "$PUB_PID"
	{ wait "$PUB_PID"; } 2>/dev/null || true # (no "Killed" line)
	pid=$PUB_PID
	check_eq "SIGKILL in the transaction leaves it open" open "$(in_transaction)"
	check_eq "... and cargohold's marker, naming the killed pid and the transaction" "$pid transaction" "$(marker '"\(.pid) \(.opening)"')"
	check_eq "the published revision is unchanged" "$rev" "$(revision)"
	check_eq "root: podman (vfs) still lists and runs hello:1 from the client mount" "$(img hello:1)|$hello" \
		"$(PODMAN_DRIVER=vfs podman_root "$vview" images --format '{{.Repository}}:{{.Tag}}' 2>&1)|$(PODMAN_DRIVER=vfs podman_root "$vview" run --rm "$(img hello:1)" 2>&1)"
	wrapped kill-vfs-3 --store "$vstore" --tls-verify=false "docker://$(img hello:1)"
	check_eq "the next run publishes (exit 0)" 0 "$RC"
	check_match "it says it aborted the stale transaction" \
		"warning: repository $REPO was left in a transaction by cargohold pid $pid .*\(killed\?\); aborted it \(cvmfs_server abort -f $REPO\); the published revision $rev is unchanged" \
		"$(cat "$WORK/kill-vfs-3.log")"
	check_eq "no transaction is left open, no marker" "closed " "$(in_transaction) $(ls "$MARKER" 2>/dev/null)"

	log "kill -9 of cargohold and its cvmfs_server during the ingest (systemd's SIGKILL of the unit)"
	wrapped kill-ingest-1 --store "$ostore" --tls-verify=false "docker://$(img hello:1)"
	check_eq "an overlay store with hello:1 publishes (exit 0)" 0 "$RC"
	make_held_server held-ingest ingest input
	rev=$(revision)
	CVMFS_SERVER=$WORK/bin/held-ingest start_publish kill-ingest-2 --store "$ostore" --tls-verify=false "docker://$(img app:1)"
	wait_until "the ingest's transaction" test -s "$WORK/held-ingest.held"
	group=$(cat "$WORK/held-ingest.held") # cvmfs_server runs in a process group of its own
	wait_until "the marker naming the ingest's process group $group" eval '[[ $(marker .cvmfs_server_group) == "$group" ]]'
	pid=$PUB_PID
	check_eq "the marker names the killed pid and the ingest" "$pid ingest" "$(marker '"\(.pid) \(.opening)"')"
	kill -KILL -- "$pid" "-$group"
	{ wait "$pid"; } 2>/dev/null || true
	check_eq "SIGKILL of both during the ingest leaves the ingest's transaction open, and the marker" "open ingest" \
		"$(in_transaction) $(marker .opening)"
	check_eq "the published revision is unchanged" "$rev" "$(revision)"
	check_eq "root: podman still lists and runs hello:1 from the client mount, only" "$(img hello:1)|$hello" "$(onames)|$(podman_root "$oview" run --rm "$(img hello:1)" 2>&1)"
	wrapped kill-ingest-3 --store "$ostore" --tls-verify=false "docker://$(img hello:1)" "docker://$(img app:1)"
	check_eq "the next run publishes (exit 0)" 0 "$RC"
	check_match "it says it aborted the ingest's transaction" \
		"warning: repository $REPO was left in a transaction by cargohold pid $pid .*running ingest.*\(killed\?\); aborted it" "$(cat "$WORK/kill-ingest-3.log")"
	check_eq "no transaction is left open, no marker" "closed " "$(in_transaction) $(ls "$MARKER" 2>/dev/null)"
	check_match "it removed the killed run's shadow, saying so" "warning: removed ${TMPDIR:-/var/tmp}/cargohold-cvmfs-$REPO-[0-9]+, the shadow of a run that was killed" \
		"$(cat "$WORK/kill-ingest-3.log")"
	check_eq "no shadow is left" "" "$(find "${TMPDIR:-/var/tmp}" -maxdepth 1 -name "cargohold-cvmfs-$REPO-*" 2>/dev/null)"
	check_eq "root: app:1 runs with its whiteout and opaque dir applied" "gone|new|keep: changed in layer 3" \
		"$(podman_root "$oview" run --rm "$(img app:1)" sh -c "$app_view" 2>&1 | paste -sd'|' -)"

	log "kill -9 of cargohold alone while cvmfs_server publishes: the publish runs to its end"
	make_held_server slow-publish publish start
	rev=$(revision)
	CVMFS_SERVER=$WORK/bin/slow-publish start_publish kill-publish-1 --store "$ostore" --tls-verify=false "docker://$(img app:2)"
	wait_until "the publish" test -s "$WORK/slow-publish.held"
	group=$(cat "$WORK/slow-publish.held")
	wait_until "the marker naming the publish's process group $group" eval '[[ $(marker .cvmfs_server_group) == "$group" ]]'
	pid=$PUB_PID
	kill -KILL "$pid"
	{ wait "$pid"; } 2>/dev/null || true
	wrapped kill-publish-2 --store "$ostore" --tls-verify=false "docker://$(img hello:1)"
	check_true "a run while the killed run's cvmfs_server publishes is skipped (75: it holds the lock) or refused (4) (exit $RC)" \
		grep -Eq "skipping this run|is still publishing into repository $REPO" "$WORK/kill-publish-2.log"
	wait_until "the end of the killed run's cvmfs_server publish" eval "! group_alive $group"
	check_eq "the publish ran to its end: two revisions more, no transaction open, the marker left" "$((rev + 2)) closed $pid" \
		"$(revision) $(in_transaction) $(marker .pid)"
	check_eq "root: podman lists app:2" "$(img app:1) $(img app:2) $(img hello:1)" "$(onames)"
	rev=$(revision)
	wrapped kill-publish-3 --store "$ostore" --tls-verify=false "docker://$(img app:2)"
	check_eq "the next run exits 0" 0 "$RC"
	check_match "it says the marker was stale and removes it" \
		"warning: repository $REPO: cargohold pid $pid .* ended without removing its transaction marker \(killed\?\); the repository is not in a transaction" \
		"$(cat "$WORK/kill-publish-3.log")"
	check_eq "no revision (nothing changed), no marker, no shadow" "$rev  " \
		"$(revision) $(ls "$MARKER" 2>/dev/null) $(find "${TMPDIR:-/var/tmp}" -maxdepth 1 -name "cargohold-cvmfs-$REPO-*" 2>/dev/null)"

	log "a transaction opened by hand (no marker) is not cargohold's to abort"
	"$SERVER_CMD" transaction "$REPO" >"$WORK/by-hand.log" 2>&1 || die "cvmfs_server transaction $REPO failed (log: $WORK/by-hand.log)"
	rev=$(revision)
	wrapped kill-foreign --store "$ostore" --tls-verify=false "docker://$(img hello:1)"
	check_eq "the run is refused (exit 4)" 4 "$RC"
	check_match "saying whose transaction it is and what to do" \
		"repository $REPO is in a transaction that cargohold did not open .*: someone is changing it by hand, so it is left alone; nothing was published" \
		"$(cat "$WORK/kill-foreign.log")"
	check_eq "the transaction stays open, no marker written" "open " "$(in_transaction) $(ls "$MARKER" 2>/dev/null)"
	"$SERVER_CMD" abort -f "$REPO" >>"$WORK/by-hand.log" 2>&1 || die "cvmfs_server abort -f $REPO failed (log: $WORK/by-hand.log)"
	check_eq "the published revision is unchanged" "$rev" "$(revision)"
}
