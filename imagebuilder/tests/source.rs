//! Finding the writable layer: `docker inspect` output and `/proc/<pid>/mountinfo`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};

use imagebuilder::{
    docker_container_from_inspect, parse_mountinfo, upper_dir_from_mountinfo, Error, WritableLayer,
};

const DOCKER_ROOT: &str = "1033 880 0:192 / / rw,relatime master:431 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/5f1c/diff,workdir=/var/lib/docker/overlay2/5f1c/work";

#[test]
fn the_root_overlays_upperdir_is_found_among_other_mounts() {
    let text = format!(
        "{DOCKER_ROOT}\n\
         1034 1033 0:195 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
         1040 1033 254:0 /var/lib/docker/volumes/w/_data /home/jovyan/work rw,relatime - ext4 /dev/vda rw\n"
    );
    assert_eq!(
        upper_dir_from_mountinfo(&text).unwrap(),
        PathBuf::from("/var/lib/docker/overlay2/5f1c/diff")
    );
    let entries = parse_mountinfo(&text).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2].mount_point, "/home/jovyan/work");
    assert_eq!(
        entries[0].option("workdir"),
        Some("/var/lib/docker/overlay2/5f1c/work")
    );
}

#[test]
fn containerd_snapshots_with_escaped_characters_and_optional_fields_parse() {
    // containerd's overlayfs snapshotter; a space and a comma escaped as the kernel does.
    let line = "2210 2100 0:300 / / rw,relatime shared:1 master:2 - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/11/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/12/my\\040fs\\054x,workdir=/w";
    assert_eq!(
        upper_dir_from_mountinfo(line).unwrap(),
        PathBuf::from(
            "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/12/my fs,x"
        )
    );
}

#[test]
fn a_root_that_is_not_overlay_or_has_no_upper_or_a_relative_one_is_an_error() {
    let ext4 = "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw";
    let err = upper_dir_from_mountinfo(ext4).unwrap_err();
    assert!(err.to_string().contains("not overlay"), "{err}");

    let read_only = "22 1 0:5 / / ro - overlay overlay ro,lowerdir=/a:/b";
    assert!(upper_dir_from_mountinfo(read_only)
        .unwrap_err()
        .to_string()
        .contains("no upperdir"));

    let relative = "22 1 0:5 / / rw - overlay overlay rw,lowerdir=l/A:l/B,upperdir=5f1c/diff,workdir=5f1c/work";
    assert!(upper_dir_from_mountinfo(relative)
        .unwrap_err()
        .to_string()
        .contains("relative"));

    assert!(matches!(
        parse_mountinfo("garbage line").unwrap_err(),
        Error::MountInfo(_)
    ));
}

#[test]
fn a_process_s_mountinfo_is_read_below_the_host_root() {
    // A fake host root holding /proc/<pid>/mountinfo, as a node agent would see the host.
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("proc/4242")).unwrap();
    std::fs::write(host.path().join("proc/4242/mountinfo"), DOCKER_ROOT).unwrap();
    let layer = WritableLayer::from_pid(4242, host.path()).unwrap();
    assert_eq!(
        layer.upper_dir,
        host.path().join("var/lib/docker/overlay2/5f1c/diff")
    );
    assert_eq!(
        WritableLayer::from_pid(4242, Path::new("/nonexistent")).unwrap_err().to_string(),
        "cannot find the container's writable layer in its mountinfo: cannot read /nonexistent/proc/4242/mountinfo: No such file or directory (os error 2)"
    );
}

#[test]
fn docker_inspect_output_gives_the_upper_dir_the_image_and_the_pid() {
    let json = r#"[{
        "Id": "c0ffee",
        "State": {"Status": "running", "Running": true, "Pid": 31337},
        "Image": "sha256:abc",
        "Config": {"Image": "127.0.0.1:5000/xiji/base-notebook:latest"},
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": "/var/lib/docker/overlay2/x-init/diff:/var/lib/docker/overlay2/y/diff",
            "MergedDir": "/var/lib/docker/overlay2/x/merged",
            "UpperDir": "/var/lib/docker/overlay2/x/diff",
            "WorkDir": "/var/lib/docker/overlay2/x/work"}}
    }]"#;
    let container = docker_container_from_inspect(json).unwrap();
    assert_eq!(container.id, "c0ffee");
    assert_eq!(
        container.upper_dir,
        PathBuf::from("/var/lib/docker/overlay2/x/diff")
    );
    assert_eq!(container.image, "127.0.0.1:5000/xiji/base-notebook:latest");
    assert_eq!(container.pid, 31337);
    assert!(container.running);
    // The Engine API's single object works too.
    let object = json.trim().trim_start_matches('[').trim_end_matches(']');
    assert_eq!(docker_container_from_inspect(object).unwrap(), container);
}

#[test]
fn docker_inspect_without_overlay2_says_why() {
    let vfs = r#"{"Id": "x", "GraphDriver": {"Name": "vfs", "Data": null}}"#;
    assert!(docker_container_from_inspect(vfs)
        .unwrap_err()
        .to_string()
        .contains("\"vfs\" is not overlay2"));
    let containerd_store = r#"{"Id": "x"}"#;
    assert!(docker_container_from_inspect(containerd_store)
        .unwrap_err()
        .to_string()
        .contains("mountinfo"));
    assert!(docker_container_from_inspect("[]").is_err());
}
