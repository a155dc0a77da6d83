//! Record formatting for `dump`: one human-readable line, or one JSON object, per record.

use foxing_proto::record::{EntryKind, EntryMeta};
use foxing_proto::time::fmt_time_ns;
use foxing_proto::{Op, Record, RelPath};
use serde_json::{json, Map, Value};

fn bytes_str(b: &[u8]) -> String {
    RelPath::new(b).to_string()
}

fn kind_str(k: &EntryKind) -> String {
    match k {
        EntryKind::Regular => "file".into(),
        EntryKind::Directory => "dir".into(),
        EntryKind::Symlink { target } => format!("symlink->{}", bytes_str(target)),
        EntryKind::Fifo => "fifo".into(),
        EntryKind::Socket => "socket".into(),
        EntryKind::CharDevice { rdev } => format!("chr:{rdev:#x}"),
        EntryKind::BlockDevice { rdev } => format!("blk:{rdev:#x}"),
    }
}

fn meta_str(m: &Option<EntryMeta>) -> String {
    match m {
        None => "absent".into(),
        Some(m) => format!(
            "{} mode={:o} uid={} gid={} size={} mtime={} ino={} nlink={} xattrs={}",
            kind_str(&m.kind),
            m.mode,
            m.uid,
            m.gid,
            m.size,
            m.mtime_ns,
            m.ino,
            m.nlink,
            m.xattrs.len()
        ),
    }
}

/// The operation's fields as text (after its kind name).
pub fn op_details(op: &Op) -> String {
    match op {
        Op::Write { path, offset, data } => format!("{path} offset={offset} len={}", data.len()),
        Op::Dirty { path, offset, len } => format!("{path} offset={offset} len={len} (inexact)"),
        Op::Truncate { path, size } => format!("{path} size={size}"),
        Op::Fallocate {
            path,
            mode,
            offset,
            len,
        } => format!("{path} mode={mode:#x} offset={offset} len={len}"),
        Op::Create {
            path,
            mode,
            uid,
            gid,
        }
        | Op::Mkdir {
            path,
            mode,
            uid,
            gid,
        } => {
            format!("{path} mode={mode:o} uid={uid} gid={gid}")
        }
        Op::Mknod {
            path,
            kind,
            mode,
            uid,
            gid,
        } => format!(
            "{path} {} mode={mode:o} uid={uid} gid={gid}",
            kind_str(kind)
        ),
        Op::Unlink { path } | Op::Rmdir { path } => path.to_string(),
        Op::Rename { from, to, flags } => format!("{from} -> {to} flags={flags:#x}"),
        Op::Symlink { path, target, .. } => format!("{path} -> {}", bytes_str(target)),
        Op::Link { existing, new } => format!("{new} = {existing}"),
        Op::Chmod { path, mode } => format!("{path} mode={mode:o}"),
        Op::Chown { path, uid, gid } => format!("{path} uid={uid:?} gid={gid:?}"),
        Op::ChownFollow { path, uid, gid } => {
            format!("{path} uid={uid:?} gid={gid:?} (following a symlink)")
        }
        Op::SetXattr {
            path,
            name,
            value,
            flags,
        } => {
            format!(
                "{path} {}={} bytes flags={flags:#x}",
                bytes_str(name),
                value.len()
            )
        }
        Op::RemoveXattr { path, name } => format!("{path} {}", bytes_str(name)),
        Op::RemoveXattrFollow { path, name } => {
            format!("{path} {} (following a symlink)", bytes_str(name))
        }
        Op::SetTimes {
            path,
            atime_ns,
            mtime_ns,
        } => format!("{path} atime={atime_ns:?} mtime={mtime_ns:?}"),
        Op::Sync { path, kind } => match path {
            Some(p) => format!("{p} {kind:?}"),
            None => format!("{kind:?}"),
        },
        Op::Resync { path, meta } => format!("{path} {}", meta_str(meta)),
        Op::ResyncData { path, offset, data } => {
            format!("{path} offset={offset} len={}", data.len())
        }
        Op::BaseBegin { base_id } | Op::BaseEnd { base_id } => format!("base={base_id}"),
        Op::Gap { lost, reason } => format!("lost={lost} reason={reason:?}"),
        Op::GapHealed { gap_seq } => format!("gap_seq={gap_seq}"),
    }
}

/// One line for a record.
pub fn record_line(r: &Record) -> String {
    format!(
        "{} {} {}[{}] uid={} {} {}",
        r.seq,
        fmt_time_ns(r.time_ns),
        r.writer.comm_str(),
        r.writer.pid,
        r.writer.uid,
        r.op.kind_name(),
        op_details(&r.op)
    )
}

fn path_json(m: &mut Map<String, Value>, key: &str, p: &[u8]) {
    m.insert(key.into(), json!(String::from_utf8_lossy(p)));
    if std::str::from_utf8(p).is_err() {
        m.insert(
            format!("{key}_hex"),
            json!(p.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        );
    }
}

/// One JSON object for a record. Paths are strings (lossy UTF-8, with a `_hex` twin when the
/// bytes are not UTF-8); payloads are given by length.
pub fn record_json(r: &Record) -> Value {
    let mut m = Map::new();
    m.insert("seq".into(), json!(r.seq));
    m.insert("time_ns".into(), json!(r.time_ns));
    m.insert("time".into(), json!(fmt_time_ns(r.time_ns)));
    m.insert(
        "writer".into(),
        json!({"pid": r.writer.pid, "tgid": r.writer.tgid, "uid": r.writer.uid, "gid": r.writer.gid,
               "cgroup_id": r.writer.cgroup_id, "comm": r.writer.comm_str()}),
    );
    m.insert("op".into(), json!(r.op.kind_name()));
    match &r.op {
        Op::Write { path, offset, data } | Op::ResyncData { path, offset, data } => {
            path_json(&mut m, "path", &path.0);
            m.insert("offset".into(), json!(offset));
            m.insert("len".into(), json!(data.len()));
        }
        Op::Dirty { path, offset, len } => {
            path_json(&mut m, "path", &path.0);
            m.insert("offset".into(), json!(offset));
            m.insert("len".into(), json!(len));
            m.insert("inexact".into(), json!(true));
        }
        Op::Truncate { path, size } => {
            path_json(&mut m, "path", &path.0);
            m.insert("size".into(), json!(size));
        }
        Op::Fallocate {
            path,
            mode,
            offset,
            len,
        } => {
            path_json(&mut m, "path", &path.0);
            m.insert("mode".into(), json!(mode));
            m.insert("offset".into(), json!(offset));
            m.insert("len".into(), json!(len));
        }
        Op::Create {
            path,
            mode,
            uid,
            gid,
        }
        | Op::Mkdir {
            path,
            mode,
            uid,
            gid,
        } => {
            path_json(&mut m, "path", &path.0);
            m.insert("mode".into(), json!(mode));
            m.insert("uid".into(), json!(uid));
            m.insert("gid".into(), json!(gid));
        }
        Op::Mknod {
            path,
            kind,
            mode,
            uid,
            gid,
        } => {
            path_json(&mut m, "path", &path.0);
            m.insert("kind".into(), json!(kind_str(kind)));
            m.insert("mode".into(), json!(mode));
            m.insert("uid".into(), json!(uid));
            m.insert("gid".into(), json!(gid));
        }
        Op::Unlink { path } | Op::Rmdir { path } => path_json(&mut m, "path", &path.0),
        Op::Rename { from, to, flags } => {
            path_json(&mut m, "from", &from.0);
            path_json(&mut m, "to", &to.0);
            m.insert("flags".into(), json!(flags));
        }
        Op::Symlink {
            path,
            target,
            uid,
            gid,
        } => {
            path_json(&mut m, "path", &path.0);
            path_json(&mut m, "target", target);
            m.insert("uid".into(), json!(uid));
            m.insert("gid".into(), json!(gid));
        }
        Op::Link { existing, new } => {
            path_json(&mut m, "existing", &existing.0);
            path_json(&mut m, "new", &new.0);
        }
        Op::Chmod { path, mode } => {
            path_json(&mut m, "path", &path.0);
            m.insert("mode".into(), json!(mode));
        }
        Op::Chown { path, uid, gid } => {
            path_json(&mut m, "path", &path.0);
            m.insert("uid".into(), json!(uid));
            m.insert("gid".into(), json!(gid));
        }
        Op::ChownFollow { path, uid, gid } => {
            path_json(&mut m, "path", &path.0);
            m.insert("uid".into(), json!(uid));
            m.insert("gid".into(), json!(gid));
            m.insert("follow".into(), json!(true));
        }
        Op::SetXattr {
            path,
            name,
            value,
            flags,
        } => {
            path_json(&mut m, "path", &path.0);
            path_json(&mut m, "name", name);
            m.insert("value_len".into(), json!(value.len()));
            m.insert("flags".into(), json!(flags));
        }
        Op::RemoveXattr { path, name } => {
            path_json(&mut m, "path", &path.0);
            path_json(&mut m, "name", name);
        }
        Op::RemoveXattrFollow { path, name } => {
            path_json(&mut m, "path", &path.0);
            path_json(&mut m, "name", name);
            m.insert("follow".into(), json!(true));
        }
        Op::SetTimes {
            path,
            atime_ns,
            mtime_ns,
        } => {
            path_json(&mut m, "path", &path.0);
            m.insert("atime_ns".into(), json!(atime_ns));
            m.insert("mtime_ns".into(), json!(mtime_ns));
        }
        Op::Sync { path, kind } => {
            if let Some(p) = path {
                path_json(&mut m, "path", &p.0);
            }
            m.insert("kind".into(), json!(format!("{kind:?}").to_lowercase()));
        }
        Op::Resync { path, meta } => {
            path_json(&mut m, "path", &path.0);
            m.insert("meta".into(), json!(meta_str(meta)));
            if let Some(me) = meta {
                m.insert("size".into(), json!(me.size));
                m.insert("mode".into(), json!(me.mode));
            }
        }
        Op::BaseBegin { base_id } | Op::BaseEnd { base_id } => {
            m.insert("base_id".into(), json!(base_id));
        }
        Op::Gap { lost, reason } => {
            m.insert("lost".into(), json!(lost));
            m.insert("reason".into(), json!(format!("{reason:?}")));
        }
        Op::GapHealed { gap_seq } => {
            m.insert("gap_seq".into(), json!(gap_seq));
        }
    }
    Value::Object(m)
}
