//! The layer tar: whiteouts, opaque directories, links, long names, attributes, exclusions,
//! the size cap. Real files in a temporary directory stand in for an overlay upper directory
//! (the markers are made as overlayfs makes them: `mknod c 0 0`, `trusted.overlay.opaque`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{mknod_whiteout, read_tar, run, write, TarItem};
use imagebuilder::{scan_layer, Error, ExcludeRules, LayerOptions, Signals, WORK_DIR};

fn layer(upper: &Path, options: &LayerOptions) -> Vec<TarItem> {
    let signals = Signals::default();
    let scan = scan_layer(upper, options, &signals).unwrap();
    let (bytes, _) = scan.write_tar(Vec::new(), &signals).unwrap();
    read_tar(&bytes)
}

fn no_excludes() -> LayerOptions {
    LayerOptions {
        excludes: ExcludeRules::none(),
        size_cap: None,
    }
}

fn paths(items: &[TarItem]) -> Vec<&str> {
    items.iter().map(|i| i.path.as_str()).collect()
}

fn find<'a>(items: &'a [TarItem], path: &str) -> &'a TarItem {
    items
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("{path} not in {:?}", paths(items)))
}

#[test]
fn a_deleted_file_becomes_a_whiteout_written_before_its_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    write(&upper.join("etc/aaa.conf"), b"new");
    mknod_whiteout(&upper.join("etc/zzz.conf"));
    mknod_whiteout(&upper.join("etc/debian_version"));

    let items = layer(upper, &no_excludes());
    assert_eq!(
        paths(&items),
        [
            "etc/",
            "etc/.wh.debian_version",
            "etc/.wh.zzz.conf",
            "etc/aaa.conf"
        ]
    );
    let wh = find(&items, "etc/.wh.zzz.conf");
    assert_eq!(wh.kind, tar::EntryType::Regular);
    assert_eq!(wh.size, 0);
}

#[test]
fn an_opaque_directory_gets_an_opaque_marker_and_overlay_attributes_are_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    write(&upper.join("usr/share/doc/only.txt"), b"only");
    xattr::set(upper.join("usr/share/doc"), "trusted.overlay.opaque", b"y").unwrap();
    // The userxattr flavour (rootless overlay) too.
    write(&upper.join("opt/app/new.txt"), b"n");
    xattr::set(upper.join("opt/app"), "user.overlay.opaque", b"y").unwrap();
    // A directory that merely got a file is not opaque.
    write(&upper.join("srv/x"), b"x");

    let items = layer(upper, &no_excludes());
    let p = paths(&items);
    let doc = p.iter().position(|p| *p == "usr/share/doc/").unwrap();
    assert_eq!(p[doc + 1], "usr/share/doc/.wh..wh..opq");
    assert_eq!(p[doc + 2], "usr/share/doc/only.txt");
    let app = p.iter().position(|p| *p == "opt/app/").unwrap();
    assert_eq!(p[app + 1], "opt/app/.wh..wh..opq");
    assert!(!p.contains(&"srv/.wh..wh..opq"));
    for item in &items {
        assert!(
            item.xattrs.iter().all(|(k, _)| !k.contains("overlay.")),
            "{} carries {:?}",
            item.path,
            item.xattrs
        );
    }
}

#[test]
fn the_xwhiteout_format_is_a_whiteout_too() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    write(&upper.join("etc/gone"), b"");
    xattr::set(upper.join("etc/gone"), "trusted.overlay.whiteout", b"").unwrap();
    let items = layer(upper, &no_excludes());
    assert_eq!(paths(&items), ["etc/", "etc/.wh.gone"]);
}

#[test]
fn hard_links_to_one_inode_become_link_entries_to_the_first_name() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    write(&upper.join("bin/tool"), b"#!/bin/sh\necho hi\n");
    std::fs::hard_link(upper.join("bin/tool"), upper.join("bin/tool-alias")).unwrap();
    std::fs::hard_link(upper.join("bin/tool"), upper.join("usr-tool")).unwrap();

    let signals = Signals::default();
    let scan = scan_layer(upper, &no_excludes(), &signals).unwrap();
    assert_eq!(scan.content_bytes(), 18, "a hard-linked inode counts once");
    let (bytes, _) = scan.write_tar(Vec::new(), &signals).unwrap();
    let items = read_tar(&bytes);
    let first = find(&items, "bin/tool");
    assert_eq!(first.kind, tar::EntryType::Regular);
    assert_eq!(first.content, b"#!/bin/sh\necho hi\n");
    for alias in ["bin/tool-alias", "usr-tool"] {
        let link = find(&items, alias);
        assert_eq!(link.kind, tar::EntryType::Link);
        assert_eq!(link.link.as_deref(), Some("bin/tool"));
        assert_eq!(link.size, 0);
    }
}

#[test]
fn long_names_and_long_link_targets_survive() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    // 3 × 90-byte components: longer than ustar's 100 + 155 split can hold.
    let long_dir = format!("{}/{}/{}", "a".repeat(90), "b".repeat(90), "c".repeat(90));
    let long_file = format!("{long_dir}/{}.txt", "f".repeat(120));
    write(&upper.join(&long_file), b"deep");
    // 150 bytes: fits the ustar prefix/name split.
    let medium = format!("{}/{}", "m".repeat(70), "n".repeat(79));
    write(&upper.join(&medium), b"medium");
    let target = format!("/{}", "t".repeat(200));
    symlink(&target, upper.join("longlink")).unwrap();
    std::fs::hard_link(upper.join(&long_file), upper.join("hl")).unwrap();

    let items = layer(upper, &no_excludes());
    assert_eq!(find(&items, &long_file).content, b"deep");
    assert_eq!(find(&items, &medium).content, b"medium");
    assert_eq!(
        find(&items, &format!("{long_dir}/")).kind,
        tar::EntryType::Directory
    );
    let link = find(&items, "longlink");
    assert_eq!(link.kind, tar::EntryType::Symlink);
    assert_eq!(link.link.as_deref(), Some(target.as_str()));
    let hl = find(&items, "hl");
    assert_eq!(hl.link.as_deref(), Some(long_file.as_str()));

    // GNU tar reads the same names (PAX `path`/`linkpath`).
    let signals = Signals::default();
    let scan = scan_layer(upper, &no_excludes(), &signals).unwrap();
    let tar_path = dir.path().join("../layer-long-names.tar");
    let file = std::fs::File::create(&tar_path).unwrap();
    scan.write_tar(file, &signals).unwrap();
    let listing = std::process::Command::new("tar")
        .args(["-tf", tar_path.to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::remove_file(&tar_path).unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.lines().any(|l| l == long_file), "{listing}");
}

#[test]
fn modes_owners_times_symlinks_and_extended_attributes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    let script = upper.join("usr/local/bin/run");
    write(&script, b"#!/bin/sh\n");
    // chown first: it clears the set-user-id bit.
    std::os::unix::fs::chown(&script, Some(1000), Some(100)).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    std::fs::File::options()
        .write(true)
        .open(&script)
        .unwrap()
        .set_modified(when)
        .unwrap();
    xattr::set(&script, "user.origin", b"pip").unwrap();
    xattr::set(
        &script,
        "security.capability",
        &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .unwrap();
    symlink("run", upper.join("usr/local/bin/run-link")).unwrap();
    std::os::unix::fs::lchown(upper.join("usr/local/bin/run-link"), Some(1000), Some(1000))
        .unwrap();
    std::fs::set_permissions(
        upper.join("usr/local"),
        std::fs::Permissions::from_mode(0o2775),
    )
    .unwrap();

    let items = layer(upper, &no_excludes());
    let run = find(&items, "usr/local/bin/run");
    assert_eq!(run.mode, 0o4755);
    assert_eq!((run.uid, run.gid), (1000, 100));
    assert_eq!(run.mtime, 1_700_000_000);
    assert!(
        run.xattrs
            .contains(&("user.origin".into(), b"pip".to_vec())),
        "{:?}",
        run.xattrs
    );
    assert!(run.xattrs.iter().any(|(k, _)| k == "security.capability"));
    let link = find(&items, "usr/local/bin/run-link");
    assert_eq!(link.kind, tar::EntryType::Symlink);
    assert_eq!(link.link.as_deref(), Some("run"));
    assert_eq!((link.uid, link.gid), (1000, 1000));
    assert_eq!(find(&items, "usr/local/").mode, 0o2775);
}

#[test]
fn device_nodes_and_fifos_are_kept_and_sockets_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    std::fs::create_dir(upper.join("dev2")).unwrap();
    run(
        "mknod",
        &[upper.join("dev2/null").to_str().unwrap(), "c", "1", "3"],
    );
    run(
        "mknod",
        &[upper.join("dev2/loop9").to_str().unwrap(), "b", "7", "9"],
    );
    run("mkfifo", &[upper.join("dev2/pipe").to_str().unwrap()]);
    let _socket = std::os::unix::net::UnixListener::bind(upper.join("dev2/sock")).unwrap();

    let signals = Signals::default();
    let scan = scan_layer(upper, &no_excludes(), &signals).unwrap();
    assert_eq!(scan.skipped(), ["/dev2/sock"]);
    let (bytes, _) = scan.write_tar(Vec::new(), &signals).unwrap();
    let items = read_tar(&bytes);
    assert_eq!(find(&items, "dev2/null").kind, tar::EntryType::Char);
    assert_eq!(find(&items, "dev2/null").dev, Some((1, 3)));
    assert_eq!(find(&items, "dev2/loop9").kind, tar::EntryType::Block);
    assert_eq!(find(&items, "dev2/loop9").dev, Some((7, 9)));
    assert_eq!(find(&items, "dev2/pipe").kind, tar::EntryType::Fifo);
    assert!(!paths(&items).contains(&"dev2/sock"));
}

#[test]
fn excluded_paths_are_left_out_with_everything_below_them() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    let work = upper.join(WORK_DIR.trim_start_matches('/'));
    write(&work.join("notebook.ipynb"), b"{}");
    write(&upper.join("home/jovyan/.cache/pip/wheel.whl"), b"w");
    write(&upper.join("home/jovyan/.bashrc"), b"alias ll='ls -l'");
    write(&upper.join("tmp/scratch"), b"s");
    write(&upper.join("var/tmp/scratch"), b"s");
    write(&upper.join("root/.cache/pip/http/x"), b"x");
    write(&upper.join("data/sets/big.csv"), b"1,2");
    write(&upper.join("database/keep.db"), b"db");
    mknod_whiteout(&work.join("deleted-in-work"));

    let options = LayerOptions {
        excludes: ExcludeRules::default().with(["/data"]),
        size_cap: None,
    };
    let items = layer(upper, &options);
    assert_eq!(
        paths(&items),
        [
            "database/",
            "database/keep.db",
            "home/",
            "home/jovyan/",
            "home/jovyan/.bashrc",
            "root/",
            "var/"
        ]
    );
}

#[test]
fn the_size_cap_fails_before_writing_and_names_the_largest_files() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    write(&upper.join("opt/model.bin"), &vec![7u8; 300_000]);
    write(&upper.join("opt/small.txt"), b"abc");
    let options = LayerOptions {
        excludes: ExcludeRules::none(),
        size_cap: Some(100_000),
    };
    let err = scan_layer(upper, &options, &Signals::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SizeCapExceeded {
                size: 300_003,
                limit: 100_000,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("/opt/model.bin (293.0 KiB)"), "{message}");
    assert!(message.contains("over the 97.7 KiB limit"), "{message}");

    // The same tree under a larger cap passes.
    let options = LayerOptions {
        size_cap: Some(1_000_000),
        ..options
    };
    scan_layer(upper, &options, &Signals::default()).unwrap();
}

#[test]
fn the_same_tree_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    for i in 0..50 {
        write(
            &upper.join(format!("d{}/f{i}", i % 7)),
            format!("{i}").as_bytes(),
        );
    }
    mknod_whiteout(&upper.join("d3/gone"));
    let signals = Signals::default();
    let one = scan_layer(upper, &no_excludes(), &signals)
        .unwrap()
        .write_tar(Vec::new(), &signals)
        .unwrap()
        .0;
    let two = scan_layer(upper, &no_excludes(), &signals)
        .unwrap()
        .write_tar(Vec::new(), &signals)
        .unwrap()
        .0;
    assert_eq!(one, two);
    // Sorted: d0 before d1, and within d3 the whiteout first.
    let items = read_tar(&one);
    let p = paths(&items);
    let mut dirs: Vec<&str> = p.iter().copied().filter(|p| p.ends_with('/')).collect();
    let sorted = {
        let mut s = dirs.clone();
        s.sort();
        s
    };
    assert_eq!(dirs, sorted);
    dirs.clear();
    let d3 = p.iter().position(|p| *p == "d3/").unwrap();
    assert_eq!(p[d3 + 1], "d3/.wh.gone");
}

#[test]
fn metadata_only_copy_ups_are_refused_rather_than_saved_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    write(&upper.join("usr/bin/python3"), b"");
    xattr::set(
        upper.join("usr/bin/python3"),
        "trusted.overlay.metacopy",
        b"",
    )
    .unwrap();
    let err = scan_layer(upper, &no_excludes(), &Signals::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedOverlay {
                feature: "metacopy",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn files_named_like_whiteouts_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    write(&upper.join("etc/.wh.sneaky"), b"x");
    write(&upper.join("etc/ok"), b"x");
    let signals = Signals::default();
    let scan = scan_layer(upper, &no_excludes(), &signals).unwrap();
    assert_eq!(scan.skipped(), ["/etc/.wh.sneaky"]);
    let items = read_tar(&scan.write_tar(Vec::new(), &signals).unwrap().0);
    assert_eq!(paths(&items), ["etc/", "etc/ok"]);
}

#[test]
fn a_cancelled_job_stops_writing() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a"), b"a");
    let signals = Signals::default();
    let scan = scan_layer(dir.path(), &no_excludes(), &signals).unwrap();
    signals.cancel_token().cancel();
    let err = scan.write_tar(Vec::new(), &signals).unwrap_err();
    assert!(matches!(err, Error::Cancelled));
    assert!(matches!(
        scan_layer(dir.path(), &no_excludes(), &signals).unwrap_err(),
        Error::Cancelled
    ));
}

#[test]
fn a_missing_upper_directory_is_a_clear_error() {
    let err = scan_layer(
        Path::new("/nonexistent/upper"),
        &no_excludes(),
        &Signals::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/upper"), "{err}");
}
