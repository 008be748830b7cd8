//! The compressed layer file: both digests are right, as recomputed by `sha256sum` over
//! `gzip -dc` / `zstd -dc` of the file, for every compression choice.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::write;
use imagebuilder::{
    scan_layer, write_layer_file, Compression, ExcludeRules, LayerOptions, Signals,
};

fn tree(upper: &Path) {
    // Compressible text, incompressible bytes, and many small files.
    let text: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    write(&upper.join("opt/text.log"), &text);
    let mut noise = vec![0u8; 3 * 1024 * 1024 + 17];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    write(&upper.join("opt/noise.bin"), &noise);
    for i in 0..300 {
        write(
            &upper.join(format!("opt/small/{i:04}.txt")),
            format!("{i}").as_bytes(),
        );
    }
}

/// `sha256sum` of a shell pipeline's output.
fn sha256_of(pipeline: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; {pipeline} | sha256sum"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{pipeline}");
    format!(
        "sha256:{}",
        String::from_utf8(out.stdout)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
    )
}

fn check(compression: Compression, decompress: &str) {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("upper");
    tree(&upper);
    let options = LayerOptions {
        excludes: ExcludeRules::none(),
        size_cap: None,
    };
    let signals = Signals::default();
    let scan = scan_layer(&upper, &options, &signals).unwrap();
    let layer = write_layer_file(&scan, &compression, dir.path(), &signals).unwrap();
    let file = layer.path().to_str().unwrap().to_string();

    assert_eq!(layer.digest, sha256_of(&format!("cat {file}")), "digest");
    let tool = decompress.split(' ').next().unwrap();
    let have_tool = Command::new(tool).arg("--version").output().is_ok();
    if have_tool {
        assert_eq!(
            layer.diff_id,
            sha256_of(&format!("{decompress} < {file}")),
            "diff_id"
        );
    } else {
        // No `zstd` command on this machine: decode with the library's decoder instead.
        eprintln!("note: {tool} is not installed; decoding with the zstd crate");
        let raw = zstd::decode_all(std::fs::File::open(&file).unwrap()).unwrap();
        assert_eq!(
            layer.diff_id,
            format!("sha256:{}", common::sha256_hex(&raw))
        );
        return;
    }
    assert_eq!(layer.size, std::fs::metadata(&file).unwrap().len());
    assert!(layer.size < layer.uncompressed_size);
    // GNU tar lists every file from the decompressed stream.
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!("{decompress} < {file} | tar -tf - | wc -l"))
        .output()
        .unwrap();
    let count: usize = String::from_utf8(listing.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(count as u64, layer.tar.entries);
    // The counters saw every byte.
    let progress = signals.snapshot();
    assert_eq!(progress.bytes_read, scan.content_bytes());
    assert_eq!(progress.total_estimate, scan.content_bytes());
    assert_eq!(progress.bytes_compressed, layer.size);

    // The temporary file goes away with the handle.
    let path = layer.path().to_path_buf();
    drop(layer);
    assert!(!path.exists());
}

#[test]
fn gzip_digests_match_sha256sum_of_the_file_and_of_gunzip() {
    check(Compression::gzip(6), "gzip -dc");
}

#[test]
fn parallel_gzip_is_one_valid_gzip_stream_with_matching_digests() {
    check(
        Compression::Gzip {
            level: 6,
            threads: 2,
            block_size: 256 * 1024,
        },
        "gzip -dc",
    );
}

#[test]
fn zstd_digests_match_sha256sum_of_the_file_and_of_unzstd() {
    check(
        Compression::Zstd {
            level: 3,
            threads: 2,
        },
        "zstd -dc",
    );
}

#[test]
fn an_empty_layer_is_still_a_valid_compressed_tar() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("upper");
    std::fs::create_dir(&upper).unwrap();
    for compression in [Compression::gzip(6), Compression::default()] {
        let signals = Signals::default();
        let scan = scan_layer(&upper, &LayerOptions::default(), &signals).unwrap();
        let layer = write_layer_file(&scan, &compression, dir.path(), &signals).unwrap();
        let file = layer.path().to_str().unwrap().to_string();
        assert_eq!(layer.uncompressed_size, 1024, "two zero blocks");
        assert_eq!(layer.diff_id, sha256_of(&format!("gzip -dc < {file}")));
    }
}
