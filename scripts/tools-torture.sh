#!/usr/bin/env bash
# Ordinary tools run in a shell inside a recorded root, replayed and compared: the run that
# found this project's AT_FDCWD, /proc/self/fd, fifo and tar-directory-mode bugs (2026-11-30,
# docs/capture.md). Needs tar, git, rsync, sqlite3, python3, acl (setfacl), attr (setfattr,
# getfattr) and libcap2-bin (setcap).
#
#   sudo scripts/tools-torture.sh FS       FS: tmpfs, ext4 or xfs (fresh loop images / mounts)
#
# Exit 1 when tree-diff finds a difference or any replicated xattr (ACLs, capabilities,
# trusted.*, user.*) differs. Uses the debug binaries: run `cargo build --workspace --bins` first.
set -u
fs=${1:-ext4}
REPO="$(cd "$(dirname "$0")/.." && pwd)"
B="$REPO/target/debug"
W=$(mktemp -d /tmp/foxing-tools.XXXXXX)
mkdir -p "$W/src" "$W/dst" "$W/state"
case $fs in
  tmpfs) mount -t tmpfs tmpfs "$W/src"; mount -t tmpfs tmpfs "$W/dst" ;;
  ext4|xfs) truncate -s 512M "$W/s.img" "$W/d.img"; "mkfs.$fs" -q "$W/s.img"; "mkfs.$fs" -q "$W/d.img"
     mount -o loop "$W/s.img" "$W/src"; mount -o loop "$W/d.img" "$W/dst" ;;
  *) echo "FS must be tmpfs, ext4 or xfs" >&2; exit 2 ;;
esac
trap 'cd /; umount "$W/src" "$W/dst"; rm -rf "$W"' EXIT
"$B/foxing-journal" record --root "$W/src" --journal "$W/j" 2>"$W/rec.log" &
rp=$!
until "$B/foxing-journal" stat --journal "$W/j" 2>/dev/null | grep -q '^bases  *[1-9]'; do sleep 0.2; done
cd "$W/src"
(
set -e
tar -C "$REPO" -cf - probes proto | tar -xpf -
mkdir acl; cd acl
echo a > a; setfacl -m u:1000:rwx,g:100:r a
mkdir d; setfacl -d -m u:1001:rw d; echo b > d/inherits
cp /bin/true cap; setcap cap_net_raw+ep cap
echo c > c; setfattr -n trusted.foo -v bar c; setfattr -n user.x -v 1 c
echo e > e; setfacl -m u:1000:rwx e; chmod 640 e
echo f > f; setfacl -m u:1000:rw f; setfacl -b f
cd ..
cp -a acl acl-copy
rsync -aHAX --delete proto/ proto-rsync/
git init -q gitrepo && cd gitrepo && cp -r ../proto/src . && git add -A && git -c user.name=x -c user.email=x@y commit -qm one && git mv src lib && git -c user.name=x -c user.email=x@y commit -qm two && git gc -q && cd ..
sed -i 's/a/b/' acl/c
find probes -name '*.c' -exec chmod 600 {} +
chmod -R g+w proto
chown -R 12:34 proto-rsync
mv probes probes2; ln -s probes2 probes
touch -h -d 2001-01-01 probes
seq 1 5000 > nums; sed -i 's/1/one/g' nums; sed -i.bak 's/2/two/' nums
printf 'a\nb\n' > p1; printf 'a\nc\n' > p2; diff -u p1 p2 > d.patch || true; patch p1 < d.patch
sqlite3 db.sqlite "create table t(x); insert into t values(1),(2); pragma journal_mode=wal; insert into t values(3);" >/dev/null
sqlite3 db2.sqlite "pragma journal_mode=delete; create table t(x); begin; insert into t values(1); commit; vacuum;" >/dev/null
dd if=/dev/urandom of=big bs=1M count=8 status=none; dd if=/dev/zero of=big bs=4k seek=100 count=10 conv=notrunc status=none
cp --sparse=always big sparse; fallocate -d sparse; fallocate -p -o 4096 -l 8192 big
mkdir -p tree/a/b; touch tree/a/b/{1..50}; find tree -name '3*' -delete; find tree -type f -exec chmod 640 {} +
tar -czf tree.tgz tree; mkdir un; tar -xzf tree.tgz -C un; rm -rf tree
cd un; mv tree ../tree2; cd ..
ln -sf nums nlink; ln -sfn tree2 tdir; ln -sfn un tdir
install -d -m 700 -o 5 -g 6 idir; install -m 755 nums idir/
split -b 1000 nums part.; cat part.* > joined; rm part.*
gzip -k joined; gunzip -c joined.gz > j2; rm joined.gz
touch -r nums j2; touch -a -d '2000-01-01' j2
mkfifo p; exec 3<>p; exec 3>&-
git init -q g; cd g; echo x > x; git add x; git -c user.name=a -c user.email=a@b commit -qm x; git checkout -q -b br; echo y > y; git add y; git -c user.name=a -c user.email=a@b commit -qm y; git checkout -q master 2>/dev/null || git checkout -q main; git branch -D br -q; cd ..
rsync -a --delete g/ g-copy/; rsync -a --inplace nums g-copy/nums-inplace; rsync -a nums g-copy/nums-inplace2
chmod u+s idir/nums; chmod g+s idir; chown 7:7 idir/nums
python3 -c "
import os
os.mkdir('py'); fd=os.open('py', os.O_RDONLY|os.O_DIRECTORY)
f=os.open('f', os.O_CREAT|os.O_WRONLY, 0o600, dir_fd=fd); os.write(f, b'hi'); os.close(f)
os.rename('f','g', src_dir_fd=fd, dst_dir_fd=fd); os.link('g','h', src_dir_fd=fd, dst_dir_fd=fd)
os.symlink('g','s', dir_fd=fd); os.chmod('g', 0o604, dir_fd=fd); os.utime('g', (1,2), dir_fd=fd)
os.setxattr('/proc/self/fd/%d/g' % fd, 'user.a', b'1'); os.unlink('h', dir_fd=fd)
os.truncate('/proc/self/fd/%d/g' % fd, 1000)
"
) || echo "WORKLOAD FAILED (the comparison below still runs)"
sync; sleep 1
kill -TERM $rp; wait $rp
cd /
"$B/foxing-applier" --root "$W/dst" --state "$W/state" --journal "$W/j" --json >"$W/apply.json" 2>"$W/apply.log" \
  || { echo "apply failed:"; tail -3 "$W/apply.log"; exit 1; }
"$B/tree-diff" "$W/src" "$W/dst" | tail -8
rc=${PIPESTATUS[0]}
for t in src dst; do
  (cd "$W/$t" && getfattr -R -h -d -m - -e hex --absolute-names . 2>/dev/null \
    | awk 'BEGIN{RS=""} {gsub(/\n/," "); print}' | grep -v 'security\.\(selinux\|ima\|evm\)' | sort) >"$W/xattrs-$t"
done
if ! diff "$W/xattrs-src" "$W/xattrs-dst" | cut -c1-300 | head -20; then :; fi
cmp -s "$W/xattrs-src" "$W/xattrs-dst" || { echo "xattrs differ"; rc=1; }
[ "$rc" = 0 ] && echo "xattrs identical"
exit "$rc"
