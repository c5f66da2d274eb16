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
