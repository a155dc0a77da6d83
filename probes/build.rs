//! Builds the eBPF object. With clang and bpftool (and /sys/kernel/btf/vmlinux) present, every
//! bpf/*.bpf.c is compiled and the objects are linked into one (bpftool gen object). Without
//! them the committed bpf/foxing.bpf.o is used; probes/tests/object.rs fails when that object is
//! older than its sources (bpf/foxing.bpf.o.sha256). Set FOXING_BPF_PREBUILT=1 to force it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("probes/bpf")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (n.ends_with(".bpf.c") || n.ends_with(".h")) && n != "vmlinux.h"
        })
        .collect();
    v.sort();
    v
}

fn sources_hash(dir: &Path) -> String {
    let mut h = Sha256::new();
    for p in sources(dir) {
        h.update(
            p.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .as_bytes(),
        );
        h.update([0]);
        h.update(std::fs::read(&p).expect("read source"));
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let bpf = manifest.join("bpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=FOXING_BPF_PREBUILT");
    let hash = sources_hash(&bpf);
    println!("cargo:rustc-env=FOXING_BPF_SOURCES_SHA256={hash}");
    let object = out.join("foxing.bpf.o");
    let prebuilt = std::env::var("FOXING_BPF_PREBUILT").is_ok_and(|v| v == "1");
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    if !prebuilt && have("clang") && have("bpftool") && btf.exists() {
        let vmlinux = out.join("vmlinux.h");
        let dump = Command::new("bpftool")
            .args(["btf", "dump", "file"])
            .arg(btf)
            .args(["format", "c"])
            .output()
            .expect("bpftool");
        assert!(
            dump.status.success(),
            "bpftool btf dump failed: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        std::fs::write(&vmlinux, dump.stdout).expect("write vmlinux.h");
        let mut objs = Vec::new();
        for src in sources(&bpf)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        {
            let stem = src
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x")
                .trim_end_matches(".bpf.c")
                .to_string();
            let o = out.join(format!("{stem}.o"));
            let st = Command::new("clang")
                .args([
                    "-g",
                    "-O2",
                    "-target",
                    "bpf",
                    "-D__TARGET_ARCH_x86",
                    "-Wall",
                    "-Werror",
                ])
                .arg(format!("-I{}", out.display()))
                .arg(format!("-I{}", bpf.display()))
                .arg("-I/usr/include/x86_64-linux-gnu")
                .arg("-c")
                .arg(&src)
                .arg("-o")
                .arg(&o)
                .status()
                .expect("clang");
            assert!(st.success(), "clang failed on {}", src.display());
            objs.push(o);
        }
        let st = Command::new("bpftool")
            .args(["gen", "object"])
            .arg(&object)
            .args(&objs)
            .status()
            .expect("bpftool gen object");
        assert!(st.success(), "bpftool gen object failed");
        println!("cargo:rustc-env=FOXING_BPF_BUILT=clang");
    } else {
        std::fs::copy(bpf.join("foxing.bpf.o"), &object)
            .expect("no clang/bpftool and no committed probes/bpf/foxing.bpf.o");
        println!(
            "cargo:warning=foxing-probes: using the committed eBPF object (no clang/bpftool here)"
        );
        println!("cargo:rustc-env=FOXING_BPF_BUILT=prebuilt");
    }
}
