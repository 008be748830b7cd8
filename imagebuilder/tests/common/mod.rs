//! Helpers shared by the test binaries.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::Command;

/// One tar entry as read back with the `tar` crate (PAX headers applied).
#[derive(Debug, Clone)]
pub struct TarItem {
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub link: Option<String>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub content: Vec<u8>,
    pub dev: Option<(u32, u32)>,
}

pub fn read_tar(bytes: &[u8]) -> Vec<TarItem> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        let header = entry.header().clone();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        let dev = match header.entry_type() {
            tar::EntryType::Char | tar::EntryType::Block => Some((
                header.device_major().unwrap().unwrap(),
                header.device_minor().unwrap().unwrap(),
            )),
            _ => None,
        };
        out.push(TarItem {
            path,
            kind: header.entry_type(),
            mode: header.mode().unwrap(),
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            mtime: header.mtime().unwrap(),
            size: header.size().unwrap(),
            link,
            xattrs,
            content,
            dev,
        });
    }
    out
}

pub fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().unwrap();
    assert!(status.success(), "{cmd} {args:?} failed");
}

/// An overlay whiteout: a character device 0:0 (needs root, as the builder itself does).
pub fn mknod_whiteout(path: &Path) {
    run("mknod", &[path.to_str().unwrap(), "c", "0", "0"]);
}

pub fn write(path: &Path, content: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
