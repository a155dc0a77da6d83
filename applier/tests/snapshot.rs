//! Snapshots compare file content by digest: holes and written zeros are the same content,
//! and a sparse file of any size is compared by reading its data only.

use std::os::unix::fs::FileExt;

use foxing_applier::fs::FsTree;
use foxing_applier::snapshot::{ContentDigest, DIGEST_BLOCK_BYTES};
use foxing_applier::tree::Tree;
use foxing_proto::RelPath;

/// Found by stress-ng's fsize stressor: tree-diff read whole files into memory and failed
/// with "out of memory" on a sparse file near the filesystem's size limit.
#[test]
fn a_sparse_file_of_a_terabyte_is_digested_by_its_data_only() {
    let d = tempfile::tempdir().unwrap();
    let size = 1u64 << 40;
    let f = std::fs::File::create(d.path().join("sparse")).unwrap();
    f.write_all_at(b"head", 10).unwrap();
    f.write_all_at(b"tail", size - 4).unwrap();
    drop(f);
    let started = std::time::Instant::now();
    let mut t = FsTree::open(d.path()).unwrap();
    let got = t.content_digest(&RelPath::new("sparse")).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let last = size / DIGEST_BLOCK_BYTES - 1;
    let mut head = vec![0u8; DIGEST_BLOCK_BYTES as usize];
    head[10..14].copy_from_slice(b"head");
    let mut tail = vec![0u8; DIGEST_BLOCK_BYTES as usize];
    tail[DIGEST_BLOCK_BYTES as usize - 4..].copy_from_slice(b"tail");
    let want = ContentDigest {
        size,
        blocks: vec![(0, crc32c::crc32c(&head)), (last, crc32c::crc32c(&tail))],
    };
    assert_eq!(got, want);
}

#[test]
fn holes_and_written_zeros_digest_alike_and_like_the_bytes_in_memory() {
    let d = tempfile::tempdir().unwrap();
    let size = 5 * DIGEST_BLOCK_BYTES + 123;
    let mut bytes = vec![0u8; size as usize];
    bytes[70_000..70_010].copy_from_slice(b"0123456789");
    bytes[size as usize - 1] = 9;
    // "sparse": holes but for the data; "dense": every byte written, zeros included.
    let sparse = std::fs::File::create(d.path().join("sparse")).unwrap();
    sparse.set_len(size).unwrap();
    sparse.write_all_at(&bytes[70_000..70_010], 70_000).unwrap();
    sparse.write_all_at(&[9], size - 1).unwrap();
    std::fs::write(d.path().join("dense"), &bytes).unwrap();
    let mut t = FsTree::open(d.path()).unwrap();
    let a = t.content_digest(&RelPath::new("sparse")).unwrap();
    let b = t.content_digest(&RelPath::new("dense")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, ContentDigest::of_bytes(&bytes));
    assert_eq!(a.blocks.len(), 2);
    // One byte changed in a zero block is a difference.
    let dense = std::fs::OpenOptions::new()
        .write(true)
        .open(d.path().join("dense"))
        .unwrap();
    dense.write_all_at(&[1], 3 * DIGEST_BLOCK_BYTES).unwrap();
    assert_ne!(t.content_digest(&RelPath::new("dense")).unwrap(), a);
}
