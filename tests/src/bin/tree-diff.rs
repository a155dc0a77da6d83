//! Compares two trees the way the tests do: content, holes' zeros, file type (fifos, devices,
//! sockets), mode, owner, symlink targets, hard-link groups, user xattrs and mtimes (to the ns).
//!
//!     tree-diff A B      exit 0 when identical, 1 with the differences listed
use foxing_applier::fs::FsTree;
use foxing_applier::snapshot::{diff_with_mtimes, replicated_xattrs, snapshot};

fn main() -> anyhow::Result<std::process::ExitCode> {
    let mut a = std::env::args_os().skip(1);
    let (Some(x), Some(y)) = (a.next(), a.next()) else {
        anyhow::bail!("usage: tree-diff A B");
    };
    let sa = snapshot(
        &mut FsTree::open(std::path::Path::new(&x))?,
        replicated_xattrs,
    )?;
    let sb = snapshot(
        &mut FsTree::open(std::path::Path::new(&y))?,
        replicated_xattrs,
    )?;
    let d = diff_with_mtimes(&sa, &sb);
    for l in &d {
        println!("{l}");
    }
    Ok(if d.is_empty() {
        println!("identical: {} entries", sa.len());
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
