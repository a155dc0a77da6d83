//! Every field of every record in bpf/foxing.h sits where the Rust mirror says.

use std::mem::{offset_of, size_of};
use std::process::Command;

use foxing_probes::layout::*;

/// Every op code and flag, C name and Rust value.
const OPS: [(&str, u32); 51] = [
    ("FX_OP_WRITE", FX_OP_WRITE),
    ("FX_OP_TRUNCATE", FX_OP_TRUNCATE),
    ("FX_OP_FSYNC", FX_OP_FSYNC),
    ("FX_OP_FDATASYNC", FX_OP_FDATASYNC),
    ("FX_OP_CREATE", FX_OP_CREATE),
    ("FX_OP_FCHMOD", FX_OP_FCHMOD),
    ("FX_OP_FCHOWN", FX_OP_FCHOWN),
    ("FX_OP_FALLOCATE", FX_OP_FALLOCATE),
    ("FX_OP_SYNC_FILE_RANGE", FX_OP_SYNC_FILE_RANGE),
    ("FX_OP_SYNCFS", FX_OP_SYNCFS),
    ("FX_OP_SYNC", FX_OP_SYNC),
    ("FX_OP_FUTIMES", FX_OP_FUTIMES),
    ("FX_OP_FSETXATTR", FX_OP_FSETXATTR),
    ("FX_OP_FREMOVEXATTR", FX_OP_FREMOVEXATTR),
    ("FX_OP_MMAP_SHARED", FX_OP_MMAP_SHARED),
    ("FX_OP_PATH_UNLINK", FX_OP_PATH_UNLINK),
    ("FX_OP_PATH_MKDIR", FX_OP_PATH_MKDIR),
    ("FX_OP_PATH_RENAME", FX_OP_PATH_RENAME),
    ("FX_OP_PATH_LINK", FX_OP_PATH_LINK),
    ("FX_OP_PATH_SYMLINK", FX_OP_PATH_SYMLINK),
    ("FX_OP_PATH_CHMOD", FX_OP_PATH_CHMOD),
    ("FX_OP_PATH_CHOWN", FX_OP_PATH_CHOWN),
    ("FX_OP_PATH_TRUNCATE", FX_OP_PATH_TRUNCATE),
    ("FX_OP_PATH_UTIMES", FX_OP_PATH_UTIMES),
    ("FX_OP_PATH_SETXATTR", FX_OP_PATH_SETXATTR),
    ("FX_OP_PATH_REMOVEXATTR", FX_OP_PATH_REMOVEXATTR),
    ("FX_OP_PATH_MKNOD", FX_OP_PATH_MKNOD),
    ("FX_OP_MSYNC", FX_OP_MSYNC),
    ("FX_OP_DIRTY_MAPPED", FX_OP_DIRTY_MAPPED),
    ("FX_OP_UNTRACKED", FX_OP_UNTRACKED),
    ("FX_OP_PATH_MOUNT", FX_OP_PATH_MOUNT),
    ("FX_F_INEXACT", FX_F_INEXACT),
    ("FX_F_TRUNC", FX_F_TRUNC),
    ("FX_F_CREATED", FX_F_CREATED),
    ("FX_F_RMDIR", FX_F_RMDIR),
    ("FX_F_NOFOLLOW", FX_F_NOFOLLOW),
    ("FX_F_ATIME_OMIT", FX_F_ATIME_OMIT),
    ("FX_F_ATIME_NOW", FX_F_ATIME_NOW),
    ("FX_F_MTIME_OMIT", FX_F_MTIME_OMIT),
    ("FX_F_MTIME_NOW", FX_F_MTIME_NOW),
    ("FX_F_CATCHALL", FX_F_CATCHALL),
    ("FX_F_CONCURRENT", FX_F_CONCURRENT),
    ("FX_F_ABS_VIEW", FX_F_ABS_VIEW),
    ("FX_F_POS_UNKNOWN", FX_F_POS_UNKNOWN),
    ("FX_F_PATH_RACY", FX_F_PATH_RACY),
    ("FX_F_UNLINKED", FX_F_UNLINKED),
    ("FX_F_NAME_GONE", FX_F_NAME_GONE),
    ("FX_F_LINKED", FX_F_LINKED),
    ("FX_F_FAILED", FX_F_FAILED),
    ("FX_MMAP_DIRTY_PAGES", FX_MMAP_DIRTY_PAGES as u32),
    ("FX_MMAP_WRITEBACK", FX_MMAP_WRITEBACK as u32),
];

#[test]
fn layout_matches_c() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("layout.c");
    let fields = [
        "seq",
        "time_ns",
        "pid",
        "tgid",
        "uid",
        "gid",
        "cgroup_id",
        "comm",
        "op",
        "flags",
        "dev",
        "ino",
        "offset",
        "len",
        "arg",
        "path_len",
        "data_len",
        "mode",
        "owner_uid",
        "owner_gid",
        "umask",
        "seq_named",
    ];
    let mut src = String::from("#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n#include \"foxing.h\"\nint main(void) {\n");
    src.push_str("printf(\"size %zu\\n\", sizeof(struct fx_event));\n");
    for f in fields {
        src.push_str(&format!(
            "printf(\"{f} %zu\\n\", offsetof(struct fx_event, {f}));\n"
        ));
    }
    for (name, _) in OPS {
        src.push_str(&format!("printf(\"{name} %d\\n\", (int){name});\n"));
    }
    src.push_str("return 0; }\n");
    std::fs::write(&c, src).unwrap();
    let exe = dir.path().join("layout");
    let inc = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf");
    let st = Command::new("cc")
        .arg(format!("-I{inc}"))
        .arg(&c)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler (cc)");
    assert!(st.success());
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    let got: std::collections::HashMap<&str, usize> = out
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(k, v)| (k, v.parse().unwrap()))
                .unwrap()
        })
        .collect();
    let rust = [
        ("size", size_of::<FxEvent>()),
        ("seq", offset_of!(FxEvent, seq)),
        ("time_ns", offset_of!(FxEvent, time_ns)),
        ("pid", offset_of!(FxEvent, pid)),
        ("tgid", offset_of!(FxEvent, tgid)),
        ("uid", offset_of!(FxEvent, uid)),
        ("gid", offset_of!(FxEvent, gid)),
        ("cgroup_id", offset_of!(FxEvent, cgroup_id)),
        ("comm", offset_of!(FxEvent, comm)),
        ("op", offset_of!(FxEvent, op)),
        ("flags", offset_of!(FxEvent, flags)),
        ("dev", offset_of!(FxEvent, dev)),
        ("ino", offset_of!(FxEvent, ino)),
        ("offset", offset_of!(FxEvent, offset)),
        ("len", offset_of!(FxEvent, len)),
        ("arg", offset_of!(FxEvent, arg)),
        ("path_len", offset_of!(FxEvent, path_len)),
        ("data_len", offset_of!(FxEvent, data_len)),
        ("mode", offset_of!(FxEvent, mode)),
        ("owner_uid", offset_of!(FxEvent, owner_uid)),
        ("owner_gid", offset_of!(FxEvent, owner_gid)),
        ("umask", offset_of!(FxEvent, umask)),
        ("seq_named", offset_of!(FxEvent, seq_named)),
    ];
    for (name, v) in OPS {
        assert_eq!(got[name], v as usize, "{name}: C and Rust differ");
    }
    for (k, v) in rust {
        assert_eq!(
            got[k], v,
            "struct fx_event {k}: C says {}, Rust {v}",
            got[k]
        );
    }
}

/// The marker of a directory found under the root, C and Rust.
#[test]
fn rooted_dir_marker_matches_c() {
    let h = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/foxing.h")).unwrap();
    let v: u8 = h
        .lines()
        .find_map(|l| l.strip_prefix("#define FX_DIR_ROOTED "))
        .and_then(|v| v.trim().parse().ok())
        .expect("FX_DIR_ROOTED in foxing.h");
    assert_eq!(v, foxing_probes::layout::FX_DIR_ROOTED);
}

/// The dirty-map keys and chunk size of bpf/common.bpf.h match the Rust side (the keys are
/// plain u64 fields, so their sizes say it all).
#[test]
fn dirty_map_keys_match_c() {
    let c =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/common.bpf.h")).unwrap();
    let shift: u32 = c
        .lines()
        .find_map(|l| l.strip_prefix("#define FX_CHUNK_SHIFT "))
        .and_then(|v| v.trim().parse().ok())
        .expect("FX_CHUNK_SHIFT in common.bpf.h");
    assert_eq!(1u64 << shift, foxing_probes::CHUNK_BYTES);
    let fields = |name: &str| -> usize {
        let start = c
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("struct {name}"));
        let body = &c[start..start + c[start..].find("};").unwrap()];
        body.matches("__u64 ").count()
    };
    assert_eq!(
        fields("fx_inode_key") * 8,
        size_of::<foxing_probes::InodeKey>()
    );
    assert_eq!(
        fields("fx_chunk_key") * 8,
        size_of::<foxing_probes::ChunkKey>()
    );
}

/// The kernel BTF in bpftool's raw format, or None (skipped) where it cannot be read.
fn kernel_btf_raw() -> Option<String> {
    match Command::new("bpftool")
        .args([
            "btf",
            "dump",
            "file",
            "/sys/kernel/btf/vmlinux",
            "format",
            "raw",
        ])
        .output()
    {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        _ => {
            assert!(
                std::env::var("FOXING_REQUIRE_BPF")
                    .map(|v| v != "1")
                    .unwrap_or(true),
                "FOXING_REQUIRE_BPF=1 but bpftool cannot read /sys/kernel/btf/vmlinux"
            );
            eprintln!("skipping: bpftool or kernel BTF unavailable");
            None
        }
    }
}

/// A struct's size and its members' byte offsets, from the raw BTF dump.
fn btf_struct(raw: &str, name: &str) -> (u64, std::collections::HashMap<String, u64>) {
    let head = format!("STRUCT '{name}' size=");
    let mut lines = raw.lines().skip_while(|l| !l.contains(&head));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no struct {name} in kernel BTF"));
    let size = first
        .split("size=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no size for struct {name}: {first}"));
    let members = lines
        .take_while(|l| l.starts_with('\t'))
        .filter_map(|l| {
            let member = l.split('\'').nth(1)?.to_string();
            let bits: u64 = l
                .split("bits_offset=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((member, bits / 8))
        })
        .collect();
    (size, members)
}

/// A member's byte offset in struct `name`, looking one level into anonymous unions and
/// structs (`file.f_path` and `dentry.d_name` sit in one).
fn btf_member_offset(raw: &str, name: &str, field: &str) -> Option<u64> {
    let (_, members) = btf_struct(raw, name);
    if let Some(&off) = members.get(field) {
        return Some(off);
    }
    let num = |l: &str, key: &str| -> Option<u64> {
        l.split(key).nth(1)?.split_whitespace().next()?.parse().ok()
    };
    let head = format!("STRUCT '{name}' size=");
    let anon: Vec<(u64, u64)> = raw
        .lines()
        .skip_while(|l| !l.contains(&head))
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .filter(|l| l.contains("'(anon)'"))
        .filter_map(|l| Some((num(l, "type_id=")?, num(l, "bits_offset=")? / 8)))
        .collect();
    for (id, base) in anon {
        let prefix = format!("[{id}] ");
        let mut lines = raw.lines().skip_while(|l| !l.starts_with(&prefix));
        lines.next()?;
        for l in lines.take_while(|l| l.starts_with('\t')) {
            if l.split('\'').nth(1) == Some(field) {
                return Some(base + num(l, "bits_offset=")? / 8);
            }
        }
    }
    None
}

/// On this kernel the hot path's fields lie in the first FX_HEAD_BYTES of their objects, so
/// each object costs one read (bpf/common.bpf.h, FX_FIELD; the per-field fallback is for other
/// layouts), and every object is at least that long (the head copy never reads past it).
#[test]
fn object_heads_cover_the_hot_fields_on_this_kernel() {
    let Some(raw) = kernel_btf_raw() else { return };
    let c =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/common.bpf.h")).unwrap();
    let head: u64 = c
        .lines()
        .find_map(|l| l.strip_prefix("#define FX_HEAD_BYTES "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    // (struct, field, bytes the probes read from it)
    let hot: &[(&str, &[(&str, u64)])] = &[
        ("file", &[("f_inode", 8), ("f_path", 16), ("f_pos", 8)]),
        (
            "inode",
            &[
                ("i_mode", 2),
                ("i_uid", 4),
                ("i_gid", 4),
                ("i_sb", 8),
                ("i_ino", 8),
            ],
        ),
        ("dentry", &[("d_parent", 8), ("d_name", 8)]),
    ];
    for (st, fields) in hot {
        let (size, _) = btf_struct(&raw, st);
        assert!(
            size >= head,
            "struct {st} is {size} bytes, shorter than FX_HEAD_BYTES {head}"
        );
        for (f, len) in fields.iter() {
            let off = btf_member_offset(&raw, st, f)
                .unwrap_or_else(|| panic!("no member {f} in struct {st} (kernel BTF)"));
            assert!(
                off + len <= head,
                "{st}.{f} at {off}+{len} lies beyond FX_HEAD_BYTES {head}: each event would read it separately"
            );
        }
    }
}

/// The fixed offsets into the kernel's private struct mount (bpf/common.bpf.h) hold on this
/// kernel, read from its BTF.
#[test]
fn struct_mount_offsets_match_this_kernel() {
    let Some(out) = kernel_btf_raw() else { return };
    let (_, members) = btf_struct(&out, "mount");
    let c =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/common.bpf.h")).unwrap();
    let def = |name: &str| -> u64 {
        c.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("#define {name} "))
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap()
    };
    assert_eq!(members["mnt_parent"], def("FX_MOUNT_PARENT_OFF"));
    assert_eq!(members["mnt_mountpoint"], def("FX_MOUNT_MOUNTPOINT_OFF"));
    assert_eq!(members["mnt"], def("FX_MOUNT_MNT_OFF"));
    // The root filesystem's mounts, walked from super_block.s_mounts (a struct mount * on
    // kernels that have mnt_next_for_sb) to find the caller's namespace among them.
    assert_eq!(members["mnt_next_for_sb"], def("FX_MOUNT_NEXT_FOR_SB_OFF"));
    assert_eq!(members["mnt_ns"], def("FX_MOUNT_NS_OFF"));

    // io_kiocb flag bits (an anonymous kernel enum) used by bpf/async.bpf.c.
    let a =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/async.bpf.c")).unwrap();
    for (fx, kernel) in [
        ("FX_REQ_F_FIXED_FILE_BIT", "REQ_F_FIXED_FILE_BIT"),
        ("FX_REQ_F_CQE_SKIP_BIT", "REQ_F_CQE_SKIP_BIT"),
    ] {
        let ours: u64 = a
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define {fx} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{fx} not defined in async.bpf.c"));
        let theirs: u64 = out
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("'{kernel}' val=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{kernel} not in kernel BTF"));
        assert_eq!(ours, theirs, "{fx} differs from the kernel's {kernel}");
    }
}
