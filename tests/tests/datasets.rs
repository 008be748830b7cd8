//! Datasets end to end, against the real `xiji` binary: a dataset's whole life (resumable
//! uploads in chunks, the tree, downloads with ranges, streamed ZIPs with Chinese names, moves,
//! deletes, the counts following); a 300 MB upload whose connection a relay cuts twice; 5,000
//! files in one folder; placement on real storage pools (a GlusterFS volume and loop-mounted
//! ext4 from `tests/setup-storage.sh`) and a pool filled to ENOSPC; the permission table of
//! `docs/datasets.md`, every cell; bad input; deleting a user.

mod datasets_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::SeekFrom;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use datasets_support::{
    add_pool, dataset_dir, dataset_path, datasets_on, file_path, files_below, fill_to_enospc,
    header_u64, mount_point, pool_named, pools, raw_get, seeded_bytes, set_pool_state, sha256_file,
    sha256_hex, unzip, user_with_token, write_seeded_file, Api, CuttingRelay, Scratch,
    EMPTY_SHA256, OFFSET_OCTETS, TUS,
};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{expect_api_error, expect_json, expect_status, Hub, HubOptions};

/// The entries of a listing as `(type, name)`, in the order given.
fn kinds_and_names(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
        .collect()
}

/// The entry named `name` of a listing.
fn entry<'a>(entries: &'a [Value], name: &str) -> Result<&'a Value> {
    entries
        .iter()
        .find(|e| e["name"] == name)
        .with_context(|| format!("no entry {name:?} in {entries:?}"))
}

/// Checks a dataset's `file_count` and `size_bytes` against the files it should hold.
async fn expect_counts(
    api: &Api<'_>,
    owner: &str,
    name: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    let dataset = api.dataset(owner, name).await?;
    let size: usize = files.values().map(Vec::len).sum();
    ensure!(
        dataset["file_count"] == json!(files.len()) && dataset["size_bytes"] == json!(size),
        "{owner}/{name} should hold {} files of {size} bytes: {dataset}",
        files.len()
    );
    Ok(())
}

#[tokio::test]
async fn a_dataset_is_uploaded_in_chunks_browsed_downloaded_zipped_moved_and_deleted_with_its_counts_following(
) -> Result<()> {
    let hub = Hub::start().await?;
    let token = user_with_token(&hub, "alice").await?;
    let alice = Api::new(&hub, &token);
    let created = alice
        .create(
            "mnist",
            json!({
                "description": "# MNIST\n\nHandwritten digits.",
                "tags": ["images", "digits"],
                "license": "CC-BY-4.0",
            }),
        )
        .await?;
    ensure!(
        created["owner"] == "alice"
            && created["name"] == "mnist"
            && created["visibility"] == "private"
            && created["access"] == "owner"
            && created["file_count"] == 0
            && created["size_bytes"] == 0
            && created["tags"] == json!(["images", "digits"])
            && created["license"] == "CC-BY-4.0"
            && created["mount_path"] == "/home/jovyan/datasets/alice/mnist",
        "the new dataset: {created}"
    );
    let dir = dataset_dir(&hub, &created).await?;

    // The Chinese-named file goes up in five PATCHes; until the last one it is listed nowhere
    // and is not among the complete files on disk.
    let train = seeded_bytes(3_000_000, 1);
    let upload = alice
        .started_upload("alice", "mnist", "数据/训练集.csv", train.len() as u64)
        .await?;
    ensure!(
        upload["path"] == "数据/训练集.csv" && upload["offset"] == 0 && upload["complete"] == false,
        "{upload}"
    );
    let url = upload["url"].as_str().unwrap_or_default().to_owned();
    let mut offset = 0usize;
    for piece in train.chunks(700_000) {
        ensure!(
            alice.tree("alice", "mnist", "").await?.is_empty(),
            "a partial upload is listed after {offset} bytes"
        );
        ensure!(
            files_below(&dir.join("files"))?.is_empty(),
            "a partial upload is among the complete files on disk after {offset} bytes"
        );
        let resp = alice.patch(&url, offset as u64, piece.to_vec()).await?;
        ensure!(
            resp.status() == StatusCode::NO_CONTENT,
            "PATCH at {offset}: {}",
            resp.status()
        );
        offset += piece.len();
        ensure!(header_u64(&resp, "upload-offset")? == offset as u64);
    }
    let listed = alice.tree("alice", "mnist", "数据").await?;
    ensure!(
        listed.len() == 1 && listed[0]["size"] == json!(train.len()),
        "{listed:?}"
    );
    // A finished upload is gone.
    let resp = alice.req(Method::HEAD, &url).send().await?;
    ensure!(
        resp.status() == StatusCode::NOT_FOUND,
        "HEAD of a finished upload: {}",
        resp.status()
    );

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("数据/训练集.csv".into(), train);
    for (path, size, seed) in [
        ("数据/测试集.csv", 500_000, 2),
        ("images/a.png", 70_000, 3),
        ("images/b.png", 80_000, 4),
        ("images/deep/c.png", 1_234, 5),
        ("a-first.txt", 10, 6),
        ("readme.md", 300, 7),
        ("z-last.txt", 20, 8),
    ] {
        let bytes = seeded_bytes(size, seed);
        alice
            .upload("alice", "mnist", path, &bytes, 64 * 1024)
            .await?;
        files.insert(path.into(), bytes);
    }
    expect_counts(&alice, "alice", "mnist", &files).await?;

    // The tree: folders first, then files, each by name; sizes, counts and sha256 of each.
    let top = alice.tree("alice", "mnist", "").await?;
    ensure!(
        kinds_and_names(&top)
            == pairs(&[
                ("dir", "images"),
                ("dir", "数据"),
                ("file", "a-first.txt"),
                ("file", "readme.md"),
                ("file", "z-last.txt"),
            ]),
        "the top folder: {top:?}"
    );
    let images = entry(&top, "images")?;
    ensure!(
        images["path"] == "images"
            && images["file_count"] == 3
            && images["size"] == json!(70_000 + 80_000 + 1_234),
        "{images}"
    );
    let data = entry(&top, "数据")?;
    ensure!(
        data["file_count"] == 2 && data["size"] == json!(3_000_000 + 500_000),
        "{data}"
    );
    for e in top.iter().filter(|e| e["type"] == "file") {
        let path = e["path"].as_str().unwrap_or_default();
        let bytes = files.get(path).with_context(|| format!("unexpected {e}"))?;
        ensure!(
            e["size"] == json!(bytes.len())
                && e["file_count"] == 1
                && e["sha256"] == json!(sha256_hex(bytes)?),
            "{e}"
        );
    }
    let inner = alice.tree("alice", "mnist", "images").await?;
    ensure!(
        kinds_and_names(&inner) == pairs(&[("dir", "deep"), ("file", "a.png"), ("file", "b.png")]),
        "{inner:?}"
    );
    ensure!(entry(&inner, "deep")?["path"] == "images/deep");
    ensure!(entry(&inner, "a.png")?["path"] == "images/a.png");
    let chinese = alice.tree("alice", "mnist", "数据").await?;
    ensure!(
        entry(&chinese, "训练集.csv")?["sha256"] == json!(sha256_hex(&files["数据/训练集.csv"])?),
        "{chinese:?}"
    );
    // Paging: pages of two give the same listing, in order, with the same total.
    let mut paged = Vec::new();
    for offset in [0, 2, 4] {
        let page = alice.tree_page("alice", "mnist", "", offset, 2).await?;
        ensure!(
            page["total"] == 5 && page["offset"] == json!(offset) && page["limit"] == 2,
            "{page}"
        );
        paged.extend(page["entries"].as_array().cloned().unwrap_or_default());
    }
    ensure!(paged == top, "pages of 2: {paged:?} against {top:?}");
    let past = alice.tree_page("alice", "mnist", "", 5, 2).await?;
    ensure!(past["entries"] == json!([]), "{past}");

    // Downloads: the same bytes; ranges.
    for (path, bytes) in &files {
        ensure!(
            &alice.download("alice", "mnist", path).await? == bytes,
            "{path} came back different"
        );
    }
    let train = &files["数据/训练集.csv"];
    let ranged = file_path("alice", "mnist", "数据/训练集.csv");
    for (range, from, to) in [
        ("bytes=1000-1999", 1000usize, 2000usize),
        ("bytes=-100", train.len() - 100, train.len()),
        ("bytes=2999990-", 2_999_990, train.len()),
    ] {
        let resp = alice
            .req(Method::GET, &ranged)
            .header("Range", range)
            .send()
            .await?;
        ensure!(
            resp.status() == StatusCode::PARTIAL_CONTENT,
            "{range}: {}",
            resp.status()
        );
        let content_range = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let want = format!("bytes {from}-{}/{}", to - 1, train.len());
        ensure!(
            content_range == want,
            "{range}: Content-Range {content_range:?}"
        );
        ensure!(
            resp.bytes().await?.as_ref() == &train[from..to],
            "{range}: other bytes"
        );
    }
    let resp = alice
        .req(Method::GET, &ranged)
        .header("Range", "bytes=5000000-")
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::RANGE_NOT_SATISFIABLE,
        "a range past the end: {}",
        resp.status()
    );

    // The whole dataset as ZIP unzips (Python's zipfile, `unzip -t`) to the same files, in a
    // folder named after the dataset; a folder's ZIP holds that folder.
    let scratch = tempfile::tempdir()?;
    for (folder, top, into) in [
        ("", "mnist", "whole"),
        ("数据", "数据", "folder"),
        ("images/deep", "deep", "nested"),
    ] {
        let archive = alice.zip("alice", "mnist", folder).await?;
        let listing = unzip(&archive, &scratch.path().join(into))?;
        let cut = if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        };
        let want: BTreeMap<String, u64> = files
            .iter()
            .filter_map(|(p, b)| {
                p.strip_prefix(&cut)
                    .map(|rest| (format!("{top}/{rest}"), b.len() as u64))
            })
            .collect();
        ensure!(
            listing == want,
            "the ZIP of {folder:?} holds {listing:?}, not {want:?}"
        );
        for name in want.keys() {
            let source = format!("{cut}{}", &name[top.len() + 1..]);
            ensure!(
                std::fs::read(scratch.path().join(into).join(name))? == files[&source],
                "{name} unzipped to other bytes"
            );
        }
    }

    // Moves: a file into a new folder, a folder renamed, a Chinese name changed.
    for (from, to) in [
        ("readme.md", "docs/README.md"),
        ("images", "pictures"),
        ("数据/测试集.csv", "数据/验证集.csv"),
    ] {
        let resp = alice
            .req(
                Method::POST,
                &format!("{}/move", dataset_path("alice", "mnist")),
            )
            .json(&json!({ "from": from, "to": to }))
            .send()
            .await?;
        let moved = expect_json(resp, StatusCode::OK, &format!("move {from} → {to}")).await?;
        ensure!(moved == json!({ "from": from, "to": to }), "{moved}");
        let moving: Vec<String> = files
            .keys()
            .filter(|p| *p == from || p.starts_with(&format!("{from}/")))
            .cloned()
            .collect();
        for old in moving {
            let bytes = files.remove(&old).unwrap_or_default();
            files.insert(format!("{to}{}", &old[from.len()..]), bytes);
        }
    }
    let top = alice.tree("alice", "mnist", "").await?;
    ensure!(
        kinds_and_names(&top)
            == pairs(&[
                ("dir", "docs"),
                ("dir", "pictures"),
                ("dir", "数据"),
                ("file", "a-first.txt"),
                ("file", "z-last.txt"),
            ]),
        "after the moves: {top:?}"
    );
    ensure!(
        alice
            .download("alice", "mnist", "pictures/deep/c.png")
            .await?
            == files["pictures/deep/c.png"]
    );
    ensure!(alice.download("alice", "mnist", "数据/验证集.csv").await? == files["数据/验证集.csv"]);
    for gone in ["images/a.png", "readme.md", "数据/测试集.csv"] {
        let resp = alice
            .req(Method::GET, &file_path("alice", "mnist", gone))
            .send()
            .await?;
        expect_api_error(resp, StatusCode::NOT_FOUND, &format!("{gone} after a move")).await?;
    }
    expect_counts(&alice, "alice", "mnist", &files).await?;

    // Deletes: a file, a folder; the counts follow.
    let resp = alice
        .req(Method::DELETE, &file_path("alice", "mnist", "z-last.txt"))
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "delete a file").await?;
    files.remove("z-last.txt");
    expect_counts(&alice, "alice", "mnist", &files).await?;
    let resp = alice
        .req(Method::DELETE, &file_path("alice", "mnist", "pictures"))
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "delete a folder").await?;
    files.retain(|p, _| !p.starts_with("pictures/"));
    expect_counts(&alice, "alice", "mnist", &files).await?;
    let top = alice.tree("alice", "mnist", "").await?;
    ensure!(
        kinds_and_names(&top)
            == pairs(&[("dir", "docs"), ("dir", "数据"), ("file", "a-first.txt")]),
        "after the deletes: {top:?}"
    );
    let on_disk: BTreeSet<String> = files_below(&dir.join("files"))?.into_keys().collect();
    let want: BTreeSet<String> = files.keys().cloned().collect();
    ensure!(on_disk == want, "on disk: {on_disk:?}, listed: {want:?}");

    // The dataset: gone from the API, the search and the disk.
    let resp = alice
        .req(Method::DELETE, &dataset_path("alice", "mnist"))
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "delete the dataset").await?;
    let resp = alice
        .req(Method::GET, &dataset_path("alice", "mnist"))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "a deleted dataset").await?;
    let resp = alice
        .req(Method::GET, "/hub/api/datasets?owner=alice")
        .send()
        .await?;
    let search = expect_json(resp, StatusCode::OK, "search").await?;
    ensure!(
        search["total"] == 0 && search["items"] == json!([]),
        "{search}"
    );
    ensure!(!dir.exists(), "{} is still on disk", dir.display());
    Ok(())
}

/// A request body read from `path` from `offset` on, 1 MiB at a time.
async fn file_body(path: &Path, offset: u64) -> Result<reqwest::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(SeekFrom::Start(offset)).await?;
    let chunks = futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 1 << 20];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((buf, file)))
    });
    Ok(reqwest::Body::wrap_stream(chunks))
}

/// The resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_upload_whose_connection_is_cut_twice_resumes_completes_with_its_sha256_and_is_never_listed_partial(
) -> Result<()> {
    const SIZE: u64 = 300_000_000;
    let hub = Hub::start().await?;
    let token = user_with_token(&hub, "ulla").await?;
    let ulla = Api::new(&hub, &token);
    let dataset = ulla.create("big", json!({})).await?;
    let dir = dataset_dir(&hub, &dataset).await?;
    let local = hub.scratch_path("big.bin");
    let path = local.clone();
    tokio::task::spawn_blocking(move || write_seeded_file(&path, SIZE, 300)).await??;
    let path = local.clone();
    let want_sha = tokio::task::spawn_blocking(move || sha256_file(&path)).await??;

    // The uploader talks through a relay that cuts at 90 MB and 200 MB of bytes sent.
    let relay = CuttingRelay::start(hub.addr().to_owned(), vec![90_000_000, 200_000_000]).await?;
    let through = ulla.via(relay.addr);
    let upload = through
        .started_upload("ulla", "big", "big.bin", SIZE)
        .await?;
    let url = upload["url"].as_str().unwrap_or_default().to_owned();
    let hub_pid = hub.pid().context("the hub's pid")?;
    let rss_before = rss_bytes(hub_pid).context("the hub's VmRSS")?;

    let done = AtomicBool::new(false);
    let uploader = async {
        let mut offset = 0u64;
        let mut broken_off = Vec::new();
        let mut conflicts = 0;
        for _attempt in 0..12 {
            let sent = through
                .req(Method::PATCH, &url)
                .header("Tus-Resumable", TUS)
                .header("Upload-Offset", offset.to_string())
                .header("Content-Type", OFFSET_OCTETS)
                .header("Content-Length", (SIZE - offset).to_string())
                .timeout(Duration::from_secs(600))
                .body(file_body(&local, offset).await?)
                .send()
                .await;
            match sent {
                Err(e) => {
                    // The connection was cut: ask where the upload stands and go on from there.
                    offset = through.upload_offset(&url).await?;
                    broken_off.push((e.to_string(), offset));
                }
                Ok(resp) if resp.status() == StatusCode::NO_CONTENT => {
                    offset = header_u64(&resp, "upload-offset")?;
                    if offset == SIZE {
                        return Ok::<_, anyhow::Error>((broken_off, conflicts));
                    }
                }
                Ok(resp) if resp.status() == StatusCode::CONFLICT => {
                    // The offset moved on (a broken-off PATCH was still being written).
                    conflicts += 1;
                    expect_api_error(resp, StatusCode::CONFLICT, "PATCH at a stale offset").await?;
                    offset = through.upload_offset(&url).await?;
                }
                Ok(resp) => bail!(
                    "PATCH at {offset}: {} {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                ),
            }
        }
        bail!("the upload did not complete in 12 requests (at {offset})")
    };
    // Meanwhile the tree (and the dataset's complete files on disk) show no partial file, and
    // the hub's memory stays flat.
    let watcher = async {
        let mut polls = 0usize;
        let mut rss_max = rss_before;
        let mut seen_complete = false;
        while !done.load(Ordering::SeqCst) {
            polls += 1;
            for e in ulla.tree("ulla", "big", "").await? {
                ensure!(
                    e["name"] == "big.bin" && e["size"] == json!(SIZE) && e["sha256"] == want_sha,
                    "a partial or foreign file is listed mid-upload: {e}"
                );
                seen_complete = true;
            }
            for (name, len) in files_below(&dir.join("files"))? {
                ensure!(
                    name == "big.bin" && len == SIZE,
                    "a partial file is among the complete files on disk: {name} ({len} bytes)"
                );
            }
            rss_max = rss_max.max(rss_bytes(hub_pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, anyhow::Error>((polls, rss_max, seen_complete))
    };
    let started = Instant::now();
    let (uploaded, watched) = futures_util::future::join(
        async {
            let r = uploader.await;
            done.store(true, Ordering::SeqCst);
            r
        },
        watcher,
    )
    .await;
    let (broken_off, conflicts) = uploaded?;
    let (polls, rss_max, _) = watched?;
    eprintln!(
        "300 MB in {:.1} s through the relay ({} bytes sent); broken off at {broken_off:?}; \
         {conflicts} conflicts; {polls} listings watched; hub RSS {} → {} MB",
        started.elapsed().as_secs_f64(),
        relay.forwarded.load(Ordering::SeqCst),
        rss_before >> 20,
        rss_max >> 20
    );

    ensure!(
        relay.cuts.load(Ordering::SeqCst) == 2 && broken_off.len() == 2,
        "two cuts expected: relay {}, client {broken_off:?}",
        relay.cuts.load(Ordering::SeqCst)
    );
    // What arrived before each cut was kept.
    let (first, second) = (broken_off[0].1, broken_off[1].1);
    ensure!(
        (45_000_000..=90_000_000).contains(&first) && first < second && second < SIZE,
        "offsets after the cuts: {first}, {second}"
    );
    ensure!(polls >= 3, "the listing was watched only {polls} times");
    ensure!(
        rss_max.saturating_sub(rss_before) < 64 << 20,
        "the hub's memory grew by {} MB during the upload",
        (rss_max - rss_before) >> 20
    );

    let listed = ulla.tree("ulla", "big", "").await?;
    ensure!(
        listed.len() == 1
            && listed[0]["name"] == "big.bin"
            && listed[0]["size"] == json!(SIZE)
            && listed[0]["sha256"] == want_sha,
        "the complete file: {listed:?} (want sha256 {want_sha})"
    );
    let on_disk = dir.join("files").join("big.bin");
    ensure!(
        sha256_file(&on_disk)? == want_sha,
        "the bytes on disk differ"
    );
    let dataset = ulla.dataset("ulla", "big").await?;
    ensure!(
        dataset["file_count"] == 1 && dataset["size_bytes"] == json!(SIZE),
        "{dataset}"
    );
    ensure!(
        files_below(&dir.join("uploads"))?.is_empty(),
        "the upload's bytes were left behind"
    );
    Ok(())
}

#[tokio::test]
async fn five_thousand_small_files_upload_eight_at_a_time_without_an_error_and_page_through_whole(
) -> Result<()> {
    const N: usize = 5_000;
    let hub = Hub::start().await?;
    let token = user_with_token(&hub, "sam").await?;
    let sam = Api::new(&hub, &token);
    sam.create("many", json!({})).await?;
    let name = |i: usize| format!("f-{i:05}.txt");
    let body = |i: usize| format!("file {i}\n{}", "x".repeat(i % 97)).into_bytes();
    let started = Instant::now();
    let results: Vec<Result<()>> = futures_util::stream::iter(0..N)
        .map(|i| {
            let sam = sam.clone();
            async move {
                sam.upload(
                    "sam",
                    "many",
                    &format!("many/{}", name(i)),
                    &body(i),
                    1 << 20,
                )
                .await
                .with_context(|| format!("file {i}"))
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    eprintln!(
        "{N} files uploaded in {:.1} s, {} errors",
        started.elapsed().as_secs_f64(),
        errors.len()
    );
    ensure!(
        errors.is_empty(),
        "{} uploads failed; the first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );

    let total: usize = (0..N).map(|i| body(i).len()).sum();
    let top = sam.tree("sam", "many", "").await?;
    ensure!(
        top.len() == 1
            && top[0]["type"] == "dir"
            && top[0]["name"] == "many"
            && top[0]["file_count"] == json!(N)
            && top[0]["size"] == json!(total),
        "{top:?}"
    );
    let dataset = sam.dataset("sam", "many").await?;
    ensure!(
        dataset["file_count"] == json!(N) && dataset["size_bytes"] == json!(total),
        "{dataset}"
    );
    // Five pages of 1000: nothing missing, nothing twice, in order.
    let mut seen = Vec::new();
    for page_no in 0..5 {
        let page = sam
            .tree_page("sam", "many", "many", page_no * 1000, 1000)
            .await?;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        ensure!(
            page["total"] == json!(N) && entries.len() == 1000,
            "page {page_no}: total {}, {} entries",
            page["total"],
            entries.len()
        );
        for e in entries {
            let i = seen.len();
            ensure!(
                e["type"] == "file"
                    && e["path"] == json!(format!("many/{}", e["name"].as_str().unwrap_or("")))
                    && e["size"] == json!(body(i).len()),
                "entry {i}: {e}"
            );
            seen.push(e["name"].as_str().unwrap_or_default().to_owned());
        }
    }
    let want: Vec<String> = (0..N).map(name).collect();
    ensure!(
        seen == want,
        "the pages do not list f-00000 … f-04999 once each, in order"
    );
    let past = sam.tree_page("sam", "many", "many", N, 1000).await?;
    ensure!(
        past["entries"] == json!([]) && past["total"] == json!(N),
        "{past}"
    );
    Ok(())
}

#[tokio::test]
async fn new_datasets_go_to_the_freer_pool_until_it_is_no_longer_the_freer_and_never_to_a_draining_one(
) -> Result<()> {
    let local = mount_point("XIJI_TEST_POOL_LOCAL")?;
    let gluster = mount_point("XIJI_TEST_POOL_GLUSTER")?;
    let mut scratch = Scratch::default();
    let local_dir = scratch.folder(&local)?;
    let gluster_dir = scratch.folder(&gluster)?;
    let hub = Hub::start().await?;
    add_pool(&hub, "gluster", &gluster_dir, "glusterfs").await?;
    add_pool(&hub, "ext4", &local_dir, "local").await?;
    // Only the two test pools take data: the default pool (empty) is removed.
    let default = pool_named(&hub, "default").await?;
    let resp = hub
        .admin(
            Method::DELETE,
            &format!("/hub/api/storage-pools/{}", default["id"]),
        )
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "remove the default pool").await?;
    ensure!(pools(&hub).await?.len() == 2);

    let token = user_with_token(&hub, "pia").await?;
    let pia = Api::new(&hub, &token);
    let free = |p: &Value| p["free_bytes"].as_u64().unwrap_or(0);
    let (volume, ext4) = (
        pool_named(&hub, "gluster").await?,
        pool_named(&hub, "ext4").await?,
    );
    ensure!(
        free(&volume) > free(&ext4),
        "the GlusterFS volume should be the freer: {volume} {ext4}"
    );

    // Five new datasets: all on the volume, the freer pool.
    for k in 1..=5u64 {
        pia.create(&format!("d{k}"), json!({})).await?;
        let (volume, ext4) = (
            pool_named(&hub, "gluster").await?,
            pool_named(&hub, "ext4").await?,
        );
        ensure!(
            datasets_on(&volume) == k && datasets_on(&ext4) == 0,
            "after {k} datasets: gluster {}, ext4 {}",
            volume["contents"],
            ext4["contents"]
        );
        let dir = dataset_dir(&hub, &pia.dataset("pia", &format!("d{k}")).await?).await?;
        ensure!(
            dir.starts_with(&gluster_dir),
            "d{k} is at {}",
            dir.display()
        );
    }

    // Files uploaded into them make the volume the less free one; the next dataset goes to ext4.
    let (volume, ext4) = (
        pool_named(&hub, "gluster").await?,
        pool_named(&hub, "ext4").await?,
    );
    let to_send = free(&volume) - free(&ext4) + (8 << 20);
    let bytes = seeded_bytes(usize::try_from(to_send)?, 44);
    pia.upload("pia", "d1", "fill.bin", &bytes, 16 << 20)
        .await?;
    drop(bytes);
    let (volume, ext4) = (
        pool_named(&hub, "gluster").await?,
        pool_named(&hub, "ext4").await?,
    );
    ensure!(
        free(&volume) < free(&ext4),
        "after {to_send} bytes into d1 the volume should be the less free: {volume} {ext4}"
    );
    pia.create("d6", json!({})).await?;
    let (volume, ext4) = (
        pool_named(&hub, "gluster").await?,
        pool_named(&hub, "ext4").await?,
    );
    ensure!(
        datasets_on(&volume) == 5 && datasets_on(&ext4) == 1,
        "d6: gluster {}, ext4 {}",
        volume["contents"],
        ext4["contents"]
    );
    ensure!(dataset_dir(&hub, &pia.dataset("pia", "d6").await?)
        .await?
        .starts_with(&local_dir));

    // A draining pool receives nothing, though it is the freer one.
    ensure!(set_pool_state(&hub, "ext4", "draining").await?["state"] == "draining");
    pia.create("d7", json!({})).await?;
    pia.create("d8", json!({})).await?;
    let (volume, ext4) = (
        pool_named(&hub, "gluster").await?,
        pool_named(&hub, "ext4").await?,
    );
    ensure!(
        free(&ext4) > free(&volume) && datasets_on(&volume) == 7 && datasets_on(&ext4) == 1,
        "with ext4 draining: gluster {} ({} free), ext4 {} ({} free)",
        volume["contents"],
        free(&volume),
        ext4["contents"],
        free(&ext4)
    );
    // With both draining nothing new is placed: 507, said plainly.
    set_pool_state(&hub, "gluster", "draining").await?;
    let resp = pia
        .req(Method::POST, "/hub/api/datasets")
        .json(&json!({ "name": "d9" }))
        .send()
        .await?;
    let message =
        expect_api_error(resp, StatusCode::INSUFFICIENT_STORAGE, "no active pool").await?;
    ensure!(message.contains("pool"), "{message}");
    let resp = pia
        .req(Method::GET, &dataset_path("pia", "d9"))
        .send()
        .await?;
    expect_api_error(
        resp,
        StatusCode::NOT_FOUND,
        "a dataset that could not be placed",
    )
    .await?;
    // The file went where its dataset is, whole.
    ensure!(
        sha256_file(
            &dataset_dir(&hub, &pia.dataset("pia", "d1").await?)
                .await?
                .join("files/fill.bin")
        )? == sha256_hex(&seeded_bytes(usize::try_from(to_send)?, 44))?
    );
    Ok(())
}

#[tokio::test]
async fn an_upload_into_a_pool_filled_to_enospc_fails_with_507_and_leaves_no_partial_file_and_the_right_size(
) -> Result<()> {
    let tiny = mount_point("XIJI_TEST_POOL_TINY")?;
    let mut scratch = Scratch::default();
    let pool_dir = scratch.folder(&tiny)?;
    let filler_dir = scratch.folder(&tiny)?;
    let hub = Hub::start().await?;
    add_pool(&hub, "tiny", &pool_dir, "local").await?;
    set_pool_state(&hub, "default", "draining").await?;
    let token = user_with_token(&hub, "fay").await?;
    let fay = Api::new(&hub, &token);
    let dataset = fay.create("full", json!({})).await?;
    let dir = dataset_dir(&hub, &dataset).await?;
    ensure!(dir.starts_with(&pool_dir), "placed at {}", dir.display());
    let before = seeded_bytes(100_000, 7);
    fay.upload("fay", "full", "before.bin", &before, 1 << 20)
        .await?;

    // Declared while the pool has the room; then the test fills the filesystem itself.
    const BIG: usize = 8 << 20;
    let free = pool_named(&hub, "tiny").await?["free_bytes"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        free > BIG as u64,
        "the tiny pool has only {free} bytes free"
    );
    let upload = fay
        .started_upload("fay", "full", "big.bin", BIG as u64)
        .await?;
    let url = upload["url"].as_str().unwrap_or_default().to_owned();
    let filler_path = filler_dir.clone();
    let filler = tokio::task::spawn_blocking(move || fill_to_enospc(&filler_path)).await??;
    let resp = fay.patch(&url, 0, seeded_bytes(BIG, 8)).await?;
    let message = expect_api_error(resp, StatusCode::INSUFFICIENT_STORAGE, "a full pool").await?;
    ensure!(
        message.contains("full") && message.contains("big.bin"),
        "the message should say the pool is full and name the file: {message}"
    );
    // No partial file anywhere, the upload is gone, the used size is what it was.
    let listed = fay.tree("fay", "full", "").await?;
    ensure!(
        kinds_and_names(&listed) == pairs(&[("file", "before.bin")]),
        "{listed:?}"
    );
    let dataset = fay.dataset("fay", "full").await?;
    ensure!(
        dataset["file_count"] == 1 && dataset["size_bytes"] == json!(before.len()),
        "{dataset}"
    );
    let resp = fay.req(Method::HEAD, &url).send().await?;
    ensure!(
        resp.status() == StatusCode::NOT_FOUND,
        "HEAD of the failed upload: {}",
        resp.status()
    );
    let resp = fay
        .req(
            Method::GET,
            &format!("{}/uploads", dataset_path("fay", "full")),
        )
        .send()
        .await?;
    ensure!(expect_json(resp, StatusCode::OK, "uploads").await? == json!([]));
    let on_disk = files_below(&dir)?;
    ensure!(
        on_disk.keys().eq(["files/before.bin"].iter()),
        "on disk: {on_disk:?}"
    );
    // Declaring more than the pool has is refused before any byte: 507.
    let resp = fay.start_upload("fay", "full", "more.bin", 1 << 20).await?;
    let message =
        expect_api_error(resp, StatusCode::INSUFFICIENT_STORAGE, "no room declared").await?;
    ensure!(message.contains("more.bin"), "{message}");
    ensure!(fay.download("fay", "full", "before.bin").await? == before);

    // With the room back, the same upload goes through.
    std::fs::remove_file(&filler)?;
    let big = seeded_bytes(BIG, 8);
    fay.upload("fay", "full", "big.bin", &big, 4 << 20).await?;
    let dataset = fay.dataset("fay", "full").await?;
    ensure!(
        dataset["file_count"] == 2 && dataset["size_bytes"] == json!(before.len() + BIG),
        "{dataset}"
    );
    Ok(())
}

/// The callers of the permission matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Owner,
    OtherUser,
    GroupMember,
    Admin,
    Anonymous,
    ServerToken,
}

impl Who {
    const ALL: [Who; 6] = [
        Who::Owner,
        Who::OtherUser,
        Who::GroupMember,
        Who::Admin,
        Who::Anonymous,
        Who::ServerToken,
    ];

    fn label(self) -> &'static str {
        match self {
            Who::Owner => "owner",
            Who::OtherUser => "other",
            Who::GroupMember => "member",
            Who::Admin => "admin",
            Who::Anonymous => "anonymous",
            Who::ServerToken => "server",
        }
    }
}

/// What a caller may do with a dataset, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Hidden,
    Read,
    Write,
    Owner,
}

/// The four kinds of dataset of the matrix (all owned by `olga`).
const KINDS: [&str; 4] = ["private", "shared-read", "shared-write", "public"];

/// docs/datasets.md's table: `None` for callers refused everything (403).
fn level_of(kind: &str, who: Who) -> Option<Level> {
    match (who, kind) {
        (Who::Anonymous | Who::ServerToken, _) => None,
        (Who::Owner | Who::Admin, _) => Some(Level::Owner),
        (Who::OtherUser, "shared-read") | (Who::OtherUser | Who::GroupMember, "public") => {
            Some(Level::Read)
        }
        (Who::GroupMember, "shared-write") => Some(Level::Write),
        _ => Some(Level::Hidden),
    }
}

const ACTIONS: [&str; 10] = [
    "list",
    "read",
    "download",
    "zip",
    "upload",
    "delete-file",
    "change",
    "share",
    "star",
    "delete-dataset",
];

fn needs(action: &str) -> Level {
    match action {
        "upload" | "delete-file" => Level::Write,
        "change" | "share" | "delete-dataset" => Level::Owner,
        _ => Level::Read,
    }
}

/// The outcome the table gives: `ok`, `absent` (not in the list), `403` or `404`.
fn expected(kind: &str, who: Who, action: &str) -> &'static str {
    match level_of(kind, who) {
        None => "403",
        Some(Level::Hidden) if action == "list" => "absent",
        Some(Level::Hidden) => "404",
        Some(level) if level >= needs(action) => "ok",
        Some(_) => "403",
    }
}

/// `ok` for `want`; the status for a JupyterHub error; anything else described.
async fn outcome(resp: reqwest::Response, want: StatusCode) -> String {
    let status = resp.status();
    if status == want {
        return "ok".into();
    }
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let well_formed = body["status"] == json!(status.as_u16())
        && body["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty());
    if (status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND) && well_formed {
        status.as_u16().to_string()
    } else {
        format!("{status} {text}")
    }
}

/// Creates one of the matrix's datasets as `olga`: its visibility, its share, two files
/// (`keep.txt` and one `victim-{who}.txt` per caller to delete).
async fn matrix_dataset(olga: &Api<'_>, kind: &str, name: &str) -> Result<()> {
    let visibility = if kind == "public" {
        "public"
    } else {
        "private"
    };
    olga.create(name, json!({ "visibility": visibility }))
        .await?;
    let share = match kind {
        "shared-read" => Some(("user", "otto", "read")),
        "shared-write" => Some(("group", "lab", "write")),
        _ => None,
    };
    if let Some((grantee, to, access)) = share {
        let resp = olga
            .req(
                Method::PUT,
                &format!("{}/shares/{grantee}/{to}", dataset_path("olga", name)),
            )
            .json(&json!({ "access": access }))
            .send()
            .await?;
        let share = expect_json(resp, StatusCode::OK, "share").await?;
        ensure!(
            share["kind"] == grantee && share["name"] == to && share["access"] == access,
            "{share}"
        );
    }
    olga.upload("olga", name, "keep.txt", b"keep me", 1 << 20)
        .await?;
    for who in Who::ALL {
        olga.upload(
            "olga",
            name,
            &format!("victim-{}.txt", who.label()),
            b"delete me",
            1 << 20,
        )
        .await?;
    }
    Ok(())
}

/// Runs one action of the matrix as `api` on `olga/{kind}`; returns its outcome.
async fn act(olga: &Api<'_>, api: &Api<'_>, kind: &str, who: Who, action: &str) -> Result<String> {
    let base = dataset_path("olga", kind);
    let label = who.label();
    Ok(match action {
        "list" => {
            let resp = api
                .req(Method::GET, "/hub/api/datasets?owner=olga&limit=100")
                .send()
                .await?;
            if resp.status() != StatusCode::OK {
                return Ok(outcome(resp, StatusCode::OK).await);
            }
            let list: Value = resp.json().await?;
            let names: Vec<&str> = list["items"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d["name"].as_str()).collect())
                .unwrap_or_default();
            if names.contains(&kind) {
                "ok".into()
            } else {
                "absent".into()
            }
        }
        "read" => {
            let resp = api.req(Method::GET, &base).send().await?;
            if resp.status() != StatusCode::OK {
                return Ok(outcome(resp, StatusCode::OK).await);
            }
            let dataset: Value = resp.json().await?;
            let want = match level_of(kind, who) {
                Some(Level::Owner) => "owner",
                Some(Level::Write) => "write",
                _ => "read",
            };
            if dataset["access"] != want {
                return Ok(format!("access {} (want {want})", dataset["access"]));
            }
            let tree = api.req(Method::GET, &format!("{base}/tree")).send().await?;
            outcome(tree, StatusCode::OK).await
        }
        "download" => {
            let resp = api
                .req(Method::GET, &file_path("olga", kind, "keep.txt"))
                .send()
                .await?;
            if resp.status() != StatusCode::OK {
                return Ok(outcome(resp, StatusCode::OK).await);
            }
            let bytes = resp.bytes().await?;
            if bytes.as_ref() == b"keep me" {
                "ok".into()
            } else {
                format!("other bytes: {bytes:?}")
            }
        }
        "zip" => {
            let resp = api.req(Method::GET, &format!("{base}/zip")).send().await?;
            if resp.status() != StatusCode::OK {
                return Ok(outcome(resp, StatusCode::OK).await);
            }
            let bytes = resp.bytes().await?;
            if bytes.starts_with(b"PK\x03\x04") {
                "ok".into()
            } else {
                "not a ZIP".into()
            }
        }
        "upload" => {
            let path = format!("from-{label}.txt");
            let resp = api.start_upload("olga", kind, &path, 5).await?;
            if resp.status() != StatusCode::CREATED {
                return Ok(outcome(resp, StatusCode::CREATED).await);
            }
            let upload: Value = resp.json().await?;
            let url = upload["url"].as_str().unwrap_or_default();
            let resp = api.patch(url, 0, b"hello".to_vec()).await?;
            let got = outcome(resp, StatusCode::NO_CONTENT).await;
            if got == "ok" && olga.download("olga", kind, &path).await? != b"hello" {
                return Ok("the uploaded file differs".into());
            }
            got
        }
        "delete-file" => {
            let path = format!("victim-{label}.txt");
            let resp = api
                .req(Method::DELETE, &file_path("olga", kind, &path))
                .send()
                .await?;
            let got = outcome(resp, StatusCode::NO_CONTENT).await;
            let still = olga
                .req(Method::GET, &file_path("olga", kind, &path))
                .send()
                .await?
                .status();
            match (got.as_str(), still) {
                ("ok", StatusCode::NOT_FOUND) => got,
                ("ok", _) => "answered 204 but the file is still there".into(),
                (_, StatusCode::OK) => got,
                (_, s) => format!("{got}, and the file is gone ({s})"),
            }
        }
        "change" => {
            let resp = api
                .req(Method::PATCH, &base)
                .json(&json!({ "description": format!("edited by {label}") }))
                .send()
                .await?;
            outcome(resp, StatusCode::OK).await
        }
        "share" => {
            let share = format!("{base}/shares/user/zed");
            let resp = api
                .req(Method::PUT, &share)
                .json(&json!({ "access": "read" }))
                .send()
                .await?;
            let got = outcome(resp, StatusCode::OK).await;
            if got == "ok" {
                let resp = api.req(Method::DELETE, &share).send().await?;
                let undone = outcome(resp, StatusCode::NO_CONTENT).await;
                if undone != "ok" {
                    return Ok(format!("shared, but unsharing gave {undone}"));
                }
            }
            got
        }
        "star" => {
            let star = format!("{base}/star");
            let resp = api.req(Method::PUT, &star).send().await?;
            if resp.status() != StatusCode::OK {
                return Ok(outcome(resp, StatusCode::OK).await);
            }
            let on: Value = resp.json().await?;
            let resp = api.req(Method::DELETE, &star).send().await?;
            let off: Value = expect_json(resp, StatusCode::OK, "unstar").await?;
            if on == json!({"stars": 1, "starred": true})
                && off == json!({"stars": 0, "starred": false})
            {
                "ok".into()
            } else {
                format!("star {on}, unstar {off}")
            }
        }
        "delete-dataset" => {
            // On a copy made the same way, so the matrix's own datasets stay.
            let copy = format!("{kind}-copy-{label}");
            matrix_dataset(olga, kind, &copy).await?;
            let resp = api
                .req(Method::DELETE, &dataset_path("olga", &copy))
                .send()
                .await?;
            let got = outcome(resp, StatusCode::NO_CONTENT).await;
            let still = olga
                .req(Method::GET, &dataset_path("olga", &copy))
                .send()
                .await?
                .status();
            match (got.as_str(), still) {
                ("ok", StatusCode::NOT_FOUND) => got,
                ("ok", _) => "answered 204 but the dataset is still there".into(),
                (_, StatusCode::OK) => got,
                (_, s) => format!("{got}, and the dataset is gone ({s})"),
            }
        }
        other => bail!("unknown action {other}"),
    })
}

/// The API token a running single-user server of `user` was given (`JUPYTERHUB_API_TOKEN`).
fn server_token_of(hub: &Hub, user: &str) -> Result<String> {
    for pid in tests::process::marked_pids(hub.marker()) {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: BTreeMap<String, String> = environ
            .split(|b| *b == 0)
            .filter_map(|v| {
                let v = String::from_utf8_lossy(v).into_owned();
                v.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect();
        if vars.get("JUPYTERHUB_USER").map(String::as_str) == Some(user) {
            if let Some(token) = vars.get("JUPYTERHUB_API_TOKEN") {
                return Ok(token.clone());
            }
        }
    }
    bail!("no running server of {user} with a JUPYTERHUB_API_TOKEN")
}

#[tokio::test]
async fn every_caller_gets_what_the_permission_table_says_on_private_shared_and_public_datasets(
) -> Result<()> {
    let hub = Hub::start().await?;
    let olga_token = user_with_token(&hub, "olga").await?;
    let otto_token = user_with_token(&hub, "otto").await?;
    let mia_token = user_with_token(&hub, "mia").await?;
    hub.create_user("zed", "zed-password-1").await?;
    let admin_token = hub.create_token("admin", json!({})).await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/groups/lab")
        .send()
        .await?;
    expect_status(resp, StatusCode::CREATED, "create group lab").await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/groups/lab/users")
        .json(&json!({ "users": ["mia"] }))
        .send()
        .await?;
    expect_status(resp, StatusCode::OK, "mia joins lab").await?;
    // A server's own token: olga's running server's.
    hub.start_server("olga").await?;
    let server_token = server_token_of(&hub, "olga")?;

    let olga = Api::new(&hub, &olga_token);
    for kind in KINDS {
        matrix_dataset(&olga, kind, kind).await?;
    }
    let caller = |who: Who| match who {
        Who::Owner => Api::new(&hub, &olga_token),
        Who::OtherUser => Api::new(&hub, &otto_token),
        Who::GroupMember => Api::new(&hub, &mia_token),
        Who::Admin => Api::new(&hub, &admin_token),
        Who::Anonymous => Api::anonymous(&hub),
        Who::ServerToken => Api::new(&hub, &server_token),
    };

    let mut wrong = Vec::new();
    let mut table = String::new();
    for kind in KINDS {
        for who in Who::ALL {
            let api = caller(who);
            let mut row = format!("{kind:>12} {:>9}:", who.label());
            for action in ACTIONS {
                let want = expected(kind, who, action);
                let got = act(&olga, &api, kind, who, action).await?;
                row.push_str(&format!(" {action}={got}"));
                if got != want {
                    wrong.push(format!(
                        "{kind} × {} × {action}: expected {want}, got {got}",
                        who.label()
                    ));
                }
            }
            table.push_str(&row);
            table.push('\n');
        }
    }
    eprintln!("{table}");
    ensure!(
        wrong.is_empty(),
        "{} of {} cells differ from docs/datasets.md:\n{}",
        wrong.len(),
        KINDS.len() * Who::ALL.len() * ACTIONS.len(),
        wrong.join("\n")
    );
    // Nothing the refused callers tried was lost.
    for kind in KINDS {
        ensure!(olga.download("olga", kind, "keep.txt").await? == b"keep me");
    }
    Ok(())
}

#[tokio::test]
async fn names_that_would_leave_the_dataset_are_refused_on_upload_move_tree_zip_and_download(
) -> Result<()> {
    let hub = Hub::start().await?;
    let token = user_with_token(&hub, "alice").await?;
    let alice = Api::new(&hub, &token);
    let dataset = alice.create("safe", json!({})).await?;
    let keep = seeded_bytes(1000, 1);
    let inner = seeded_bytes(2000, 2);
    alice
        .upload("alice", "safe", "keep.txt", &keep, 1 << 20)
        .await?;
    alice
        .upload("alice", "safe", "dir/inner.bin", &inner, 1 << 20)
        .await?;
    let dir = dataset_dir(&hub, &dataset).await?;
    let pool_root = dir
        .parent()
        .and_then(Path::parent)
        .context("the pool of the dataset")?
        .to_path_buf();
    let before_on_pool = files_below(&pool_root)?;

    let bad = [
        "../x",
        "..",
        "/etc/passwd",
        "a/../../b",
        "x/../../../etc/passwd",
        "a\0b",
        "a\u{1}b",
        "line\nbreak",
        "tab\there",
        "del\u{7f}",
    ];
    for name in bad {
        let what = format!("{name:?}");
        let resp = alice.start_upload("alice", "safe", name, 5).await?;
        expect_api_error(resp, StatusCode::BAD_REQUEST, &format!("upload {what}")).await?;
        for (from, to) in [("keep.txt", name), (name, "stolen.txt")] {
            let resp = alice
                .req(
                    Method::POST,
                    &format!("{}/move", dataset_path("alice", "safe")),
                )
                .json(&json!({ "from": from, "to": to }))
                .send()
                .await?;
            expect_api_error(
                resp,
                StatusCode::BAD_REQUEST,
                &format!("move {from:?} → {to:?}"),
            )
            .await?;
        }
        for endpoint in ["zip", "tree"] {
            let resp = alice
                .req(
                    Method::GET,
                    &format!("{}/{endpoint}", dataset_path("alice", "safe")),
                )
                .query(&[("path", name)])
                .send()
                .await?;
            // A folder parameter is read from the dataset's top, so `/etc/passwd` names the
            // folder `etc/passwd` inside it, which does not exist.
            let want = if name.starts_with('/') {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            let message = expect_api_error(resp, want, &format!("{endpoint} of {what}")).await?;
            ensure!(
                want == StatusCode::BAD_REQUEST || message.contains("in alice/safe"),
                "{endpoint} of {what}: {message}"
            );
        }
    }
    // Downloads and deletes by a path no URL parser touched.
    for target in [
        "/hub/api/datasets/alice/safe/files/../../../../../etc/passwd",
        "/hub/api/datasets/alice/safe/files/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/hub/api/datasets/alice/safe/files/%2Fetc%2Fpasswd",
        "/hub/api/datasets/alice/safe/files/dir/..%2F..%2F..%2Fcover",
        "/hub/api/datasets/alice/safe/files/a%00b",
        "/hub/api/datasets/alice/safe/files/%2E%2E/%2E%2E/uploads",
    ] {
        for method in ["GET", "DELETE"] {
            let raw = raw_get(hub.addr(), method, target, &token).await?;
            ensure!(
                raw.status == 400 || raw.status == 404,
                "{method} {target}: {} {}",
                raw.status,
                raw.body
            );
            ensure!(
                !raw.body.contains("root:"),
                "{method} {target} leaked a file"
            );
            raw.expect_api_error(raw.status, &format!("{method} {target}"))?;
        }
    }
    // Nothing moved, nothing new anywhere on the pool, the files intact.
    let listed = alice.tree("alice", "safe", "").await?;
    ensure!(
        kinds_and_names(&listed) == pairs(&[("dir", "dir"), ("file", "keep.txt")]),
        "{listed:?}"
    );
    ensure!(
        files_below(&pool_root)? == before_on_pool,
        "the pool changed"
    );
    ensure!(alice.download("alice", "safe", "keep.txt").await? == keep);
    ensure!(alice.download("alice", "safe", "dir/inner.bin").await? == inner);
    Ok(())
}

/// A 1×1 PNG.
const PNG: &str =
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000b49444154\
                   789c6360000200000500017a5eab3f0000000049454e44ae426082";

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[tokio::test]
async fn bad_uploads_and_names_get_the_right_4xx_with_a_message_and_nothing_is_lost() -> Result<()>
{
    // 0.001 GiB: 1,073,741 bytes for all of a user's datasets.
    let hub = Hub::start_with(HubOptions {
        tables_toml: "\n[datasets]\nuser_limit_gb = 0.001\n".into(),
        ..HubOptions::default()
    })
    .await?;
    let token = user_with_token(&hub, "alice").await?;
    let alice = Api::new(&hub, &token);
    alice.create("safe", json!({})).await?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (path, size, seed) in [("keep.txt", 1000, 1), ("dir/inner.bin", 50_000, 2)] {
        let bytes = seeded_bytes(size, seed);
        alice.upload("alice", "safe", path, &bytes, 1 << 20).await?;
        files.insert(path.into(), bytes);
    }
    let uploads_path = format!("{}/uploads", dataset_path("alice", "safe"));

    // A 0-byte file is complete at once, with the sha256 of nothing.
    let upload = alice
        .started_upload("alice", "safe", "empty.txt", 0)
        .await?;
    ensure!(upload["complete"] == true, "{upload}");
    files.insert("empty.txt".into(), Vec::new());
    let listed = alice.tree("alice", "safe", "").await?;
    let empty = entry(&listed, "empty.txt")?;
    ensure!(
        empty["size"] == 0 && empty["sha256"] == EMPTY_SHA256,
        "{empty}"
    );
    ensure!(alice
        .download("alice", "safe", "empty.txt")
        .await?
        .is_empty());

    // A chunk at the wrong offset: 409 naming the right one; the upload goes on from there.
    let body = seeded_bytes(1000, 4);
    let upload = alice.started_upload("alice", "safe", "w.bin", 1000).await?;
    let url = upload["url"].as_str().unwrap_or_default().to_owned();
    let resp = alice.patch(&url, 0, body[..400].to_vec()).await?;
    expect_status(resp, StatusCode::NO_CONTENT, "the first chunk").await?;
    for wrong in [0u64, 700, 399] {
        let resp = alice
            .patch(&url, wrong, body[wrong as usize..].to_vec())
            .await?;
        let message =
            expect_api_error(resp, StatusCode::CONFLICT, &format!("a chunk at {wrong}")).await?;
        ensure!(
            message.contains("400"),
            "the 409 should name 400: {message}"
        );
    }
    ensure!(alice.upload_offset(&url).await? == 400);
    // More bytes than declared: 400, nothing taken.
    let resp = alice.patch(&url, 400, seeded_bytes(700, 5)).await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "more bytes than declared").await?;
    ensure!(alice.upload_offset(&url).await? == 400);
    let resp = alice.patch(&url, 400, body[400..].to_vec()).await?;
    expect_status(resp, StatusCode::NO_CONTENT, "the rest").await?;
    ensure!(
        entry(&alice.tree("alice", "safe", "").await?, "w.bin")?["sha256"] == sha256_hex(&body)?
    );
    files.insert("w.bin".into(), body);

    // Duplicate names: a file, an upload under way, a move onto a file, a dataset, a rename.
    let resp = alice.start_upload("alice", "safe", "keep.txt", 10).await?;
    let message = expect_api_error(resp, StatusCode::CONFLICT, "an existing file").await?;
    ensure!(message.contains("keep.txt"), "{message}");
    let pending = alice
        .started_upload("alice", "safe", "pending.bin", 10)
        .await?;
    let resp = alice
        .start_upload("alice", "safe", "pending.bin", 10)
        .await?;
    expect_api_error(resp, StatusCode::CONFLICT, "a path being uploaded").await?;
    let resp = alice
        .req(Method::DELETE, pending["url"].as_str().unwrap_or_default())
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "give an upload up").await?;
    let resp = alice
        .req(
            Method::POST,
            &format!("{}/move", dataset_path("alice", "safe")),
        )
        .json(&json!({ "from": "keep.txt", "to": "dir/inner.bin" }))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::CONFLICT, "a move onto a file").await?;
    let resp = alice
        .req(Method::POST, "/hub/api/datasets")
        .json(&json!({ "name": "safe" }))
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::CONFLICT, "a second safe").await?;
    ensure!(message.contains("safe"), "{message}");
    alice.create("other", json!({})).await?;
    let resp = alice
        .req(Method::PATCH, &dataset_path("alice", "other"))
        .json(&json!({ "name": "safe" }))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::CONFLICT, "a rename onto safe").await?;
    // Bad dataset names.
    for name in [
        "../x",
        ".hidden",
        "-dash",
        "a/b",
        "",
        &"x".repeat(65),
        "a\0b",
    ] {
        let resp = alice
            .req(Method::POST, "/hub/api/datasets")
            .json(&json!({ "name": name }))
            .send()
            .await?;
        expect_api_error(
            resp,
            StatusCode::BAD_REQUEST,
            &format!("dataset name {name:?}"),
        )
        .await?;
    }

    // Unknown datasets, owners, files, uploads: 404.
    for (method, path) in [
        (Method::GET, dataset_path("alice", "nope")),
        (
            Method::GET,
            format!("{}/tree", dataset_path("alice", "nope")),
        ),
        (
            Method::GET,
            format!("{}/zip", dataset_path("alice", "nope")),
        ),
        (Method::GET, file_path("alice", "nope", "keep.txt")),
        (
            Method::POST,
            format!("{}/uploads", dataset_path("alice", "nope")),
        ),
        (Method::DELETE, dataset_path("alice", "nope")),
        (
            Method::PUT,
            format!("{}/star", dataset_path("alice", "nope")),
        ),
        (Method::GET, dataset_path("nobody", "safe")),
        (Method::GET, file_path("alice", "safe", "missing.txt")),
        (Method::DELETE, file_path("alice", "safe", "missing.txt")),
        (
            Method::GET,
            format!("{}/tree?path=missing", dataset_path("alice", "safe")),
        ),
        (
            Method::PATCH,
            "/hub/api/uploads/0123456789abcdef".to_owned(),
        ),
        (Method::GET, "/hub/api/uploads/0123456789abcdef".to_owned()),
        (
            Method::DELETE,
            "/hub/api/uploads/0123456789abcdef".to_owned(),
        ),
    ] {
        let resp = alice
            .req(method.clone(), &path)
            .header("Tus-Resumable", TUS)
            .header("Upload-Offset", "0")
            .json(&json!({ "path": "x", "size": 1 }))
            .send()
            .await?;
        expect_api_error(resp, StatusCode::NOT_FOUND, &format!("{method} {path}")).await?;
    }
    let resp = alice
        .req(Method::HEAD, "/hub/api/uploads/0123456789abcdef")
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::NOT_FOUND,
        "HEAD of no upload: {}",
        resp.status()
    );

    // Over the owner's limit: refused before any byte, and uploads under way count.
    let resp = alice
        .start_upload("alice", "safe", "huge.bin", 2_000_000)
        .await?;
    let message = expect_api_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "over the limit").await?;
    ensure!(message.contains("huge.bin"), "{message}");
    let half = alice
        .started_upload("alice", "safe", "half.bin", 600_000)
        .await?;
    let resp = alice
        .start_upload("alice", "safe", "half2.bin", 600_000)
        .await?;
    expect_api_error(
        resp,
        StatusCode::PAYLOAD_TOO_LARGE,
        "over the limit with an upload under way",
    )
    .await?;
    let resp = alice
        .req(Method::DELETE, half["url"].as_str().unwrap_or_default())
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "give half.bin up").await?;
    let half2 = alice
        .started_upload("alice", "safe", "half2.bin", 600_000)
        .await?;
    let resp = alice.req(Method::GET, &uploads_path).send().await?;
    let under_way = expect_json(resp, StatusCode::OK, "uploads under way").await?;
    ensure!(
        under_way.as_array().map(Vec::len) == Some(1) && under_way[0]["id"] == half2["id"],
        "{under_way}"
    );
    let resp = alice
        .req(Method::DELETE, half2["url"].as_str().unwrap_or_default())
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "give half2.bin up").await?;

    // Nothing was lost.
    let resp = alice.req(Method::GET, &uploads_path).send().await?;
    ensure!(expect_json(resp, StatusCode::OK, "uploads").await? == json!([]));
    for (path, bytes) in &files {
        ensure!(
            &alice.download("alice", "safe", path).await? == bytes,
            "{path} changed"
        );
    }
    let listed = alice.tree("alice", "safe", "").await?;
    ensure!(
        kinds_and_names(&listed)
            == pairs(&[
                ("dir", "dir"),
                ("file", "empty.txt"),
                ("file", "keep.txt"),
                ("file", "w.bin"),
            ]),
        "{listed:?}"
    );
    expect_counts(&alice, "alice", "safe", &files).await?;
    Ok(())
}

#[tokio::test]
async fn a_cover_that_is_not_an_image_gets_a_4xx_with_a_message_even_at_10_mb_and_a_png_is_taken(
) -> Result<()> {
    let hub = Hub::start().await?;
    let token = user_with_token(&hub, "alice").await?;
    let alice = Api::new(&hub, &token);
    alice.create("safe", json!({})).await?;
    // 10 MB that are not an image, sent as a browser sends them (no `Expect: 100-continue`):
    // the answer must reach the client every time, not a broken connection.
    let cover = format!("{}/cover", dataset_path("alice", "safe"));
    let not_an_image = seeded_bytes(10_000_000, 3);
    for attempt in 0..8 {
        let what = format!("a 10 MB non-image cover (attempt {attempt})");
        let resp = alice
            .req(Method::PUT, &cover)
            .header("Content-Type", "image/png")
            .body(not_an_image.clone())
            .send()
            .await
            .with_context(|| format!("{what}: no answer"))?;
        let status = resp.status();
        ensure!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
            "{what}: {status}"
        );
        expect_api_error(resp, status, &what).await?;
    }
    let resp = alice
        .req(Method::PUT, &cover)
        .header("Content-Type", "image/png")
        .body("<svg onload=alert(1)></svg>")
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::BAD_REQUEST, "an SVG cover").await?;
    ensure!(
        message.contains("PNG") || message.contains("image"),
        "{message}"
    );
    ensure!(alice.dataset("alice", "safe").await?["has_cover"] == false);
    let resp = alice.req(Method::GET, &cover).send().await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "no cover yet").await?;
    let png = unhex(PNG);
    let resp = alice
        .req(Method::PUT, &cover)
        .header("Content-Type", "application/octet-stream")
        .body(png.clone())
        .send()
        .await?;
    ensure!(resp.status().is_success(), "a PNG cover: {}", resp.status());
    ensure!(alice.dataset("alice", "safe").await?["has_cover"] == true);
    let resp = alice.req(Method::GET, &cover).send().await?;
    ensure!(resp.status() == StatusCode::OK);
    ensure!(
        resp.headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes() == b"image/png"),
        "{:?}",
        resp.headers()
    );
    ensure!(resp.bytes().await?.as_ref() == png.as_slice());

    Ok(())
}

#[tokio::test]
async fn deleting_a_user_deletes_their_datasets_their_files_and_the_shares_and_stars_of_them(
) -> Result<()> {
    let hub = Hub::start().await?;
    let olga_token = user_with_token(&hub, "olga").await?;
    let otto_token = user_with_token(&hub, "otto").await?;
    let admin_token = hub.create_token("admin", json!({})).await?;
    let (olga, otto, admin) = (
        Api::new(&hub, &olga_token),
        Api::new(&hub, &otto_token),
        Api::new(&hub, &admin_token),
    );
    let resp = hub
        .admin(Method::POST, "/hub/api/groups/lab")
        .send()
        .await?;
    expect_status(resp, StatusCode::CREATED, "create group lab").await?;

    // olga's datasets: one shared with otto and the group, one public; otto stars both.
    let shared = olga.create("a", json!({})).await?;
    let public = olga.create("b", json!({ "visibility": "public" })).await?;
    for (kind, name) in [("user", "otto"), ("group", "lab")] {
        let resp = olga
            .req(
                Method::PUT,
                &format!("{}/shares/{kind}/{name}", dataset_path("olga", "a")),
            )
            .json(&json!({ "access": "read" }))
            .send()
            .await?;
        expect_status(resp, StatusCode::OK, "share a").await?;
    }
    for name in ["a", "b"] {
        olga.upload("olga", name, "data/x.bin", &seeded_bytes(5000, 1), 1 << 20)
            .await?;
        let resp = otto
            .req(Method::PUT, &format!("{}/star", dataset_path("olga", name)))
            .send()
            .await?;
        expect_status(resp, StatusCode::OK, "otto stars").await?;
    }
    let dirs = [
        dataset_dir(&hub, &shared).await?,
        dataset_dir(&hub, &public).await?,
    ];
    // otto's own dataset, starred by olga and shared with her.
    otto.create("o", json!({ "visibility": "public" })).await?;
    let resp = olga
        .req(Method::PUT, &format!("{}/star", dataset_path("otto", "o")))
        .send()
        .await?;
    expect_status(resp, StatusCode::OK, "olga stars o").await?;
    let resp = otto
        .req(
            Method::PUT,
            &format!("{}/shares/user/olga", dataset_path("otto", "o")),
        )
        .json(&json!({ "access": "write" }))
        .send()
        .await?;
    expect_status(resp, StatusCode::OK, "otto shares o with olga").await?;
    let resp = otto
        .req(Method::GET, "/hub/api/datasets?starred=true")
        .send()
        .await?;
    let starred = expect_json(resp, StatusCode::OK, "otto's stars").await?;
    ensure!(starred["total"] == 2, "{starred}");
    ensure!(datasets_on(&pool_named(&hub, "default").await?) == 3);

    let resp = hub
        .admin(Method::DELETE, "/hub/api/users/olga")
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "delete olga").await?;

    for name in ["a", "b"] {
        let resp = admin
            .req(Method::GET, &dataset_path("olga", name))
            .send()
            .await?;
        expect_api_error(resp, StatusCode::NOT_FOUND, "a dataset of a deleted user").await?;
    }
    for dir in &dirs {
        ensure!(!dir.exists(), "{} is still on disk", dir.display());
    }
    ensure!(
        datasets_on(&pool_named(&hub, "default").await?) == 1,
        "the pool still counts the deleted user's datasets"
    );
    let resp = otto
        .req(Method::GET, "/hub/api/datasets?starred=true")
        .send()
        .await?;
    let starred = expect_json(resp, StatusCode::OK, "otto's stars").await?;
    ensure!(
        starred["total"] == 0 && starred["items"] == json!([]),
        "{starred}"
    );
    let resp = admin.req(Method::GET, "/hub/api/datasets").send().await?;
    let all = expect_json(resp, StatusCode::OK, "every dataset").await?;
    let names: Vec<String> = all["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!(
                        "{}/{}",
                        d["owner"].as_str().unwrap_or(""),
                        d["name"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ensure!(names == ["otto/o"], "{names:?}");
    // Her star and share on otto's dataset are gone.
    let o = otto.dataset("otto", "o").await?;
    ensure!(o["stars"] == 0, "{o}");
    let resp = otto
        .req(
            Method::GET,
            &format!("{}/shares", dataset_path("otto", "o")),
        )
        .send()
        .await?;
    ensure!(expect_json(resp, StatusCode::OK, "o's shares").await? == json!([]));

    // A new olga starts from nothing: her old names are free, and old shares do not reach her
    // new datasets.
    let new_token = user_with_token(&hub, "olga").await?;
    let new_olga = Api::new(&hub, &new_token);
    let resp = new_olga
        .req(Method::GET, "/hub/api/datasets?owner=olga")
        .send()
        .await?;
    ensure!(expect_json(resp, StatusCode::OK, "new olga's").await?["total"] == 0);
    let again = new_olga.create("a", json!({})).await?;
    ensure!(again["file_count"] == 0 && again["stars"] == 0, "{again}");
    let resp = otto
        .req(Method::GET, &dataset_path("olga", "a"))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "an old share on a new dataset").await?;
    let resp = new_olga
        .req(
            Method::GET,
            &format!("{}/shares", dataset_path("olga", "a")),
        )
        .send()
        .await?;
    ensure!(expect_json(resp, StatusCode::OK, "new a's shares").await? == json!([]));
    Ok(())
}

#[tokio::test]
async fn a_large_chunk_at_a_wrong_offset_or_past_the_declared_size_gets_its_4xx_not_a_broken_connection(
) -> Result<()> {
    const SIZE: usize = 40 << 20;
    let hub = Hub::start().await?;
    let token = user_with_token(&hub, "alice").await?;
    let alice = Api::new(&hub, &token);
    alice.create("big", json!({})).await?;
    let bytes = seeded_bytes(SIZE, 9);
    let upload = alice
        .started_upload("alice", "big", "big.bin", SIZE as u64)
        .await?;
    let url = upload["url"].as_str().unwrap_or_default().to_owned();
    let resp = alice.patch(&url, 0, bytes[..1000].to_vec()).await?;
    expect_status(resp, StatusCode::NO_CONTENT, "the first chunk").await?;
    // A tus client that lost track sends 20 MB from offset 0: the 409 must reach it.
    for attempt in 0..8 {
        let what = format!("20 MB at a stale offset (attempt {attempt})");
        let resp = alice
            .patch(&url, 0, bytes[..20 << 20].to_vec())
            .await
            .with_context(|| format!("{what}: no answer"))?;
        let message = expect_api_error(resp, StatusCode::CONFLICT, &what).await?;
        ensure!(message.contains("1000"), "{what}: {message}");
    }
    // 40 MB from offset 1000 go past the declared end: 400, and nothing is taken.
    for attempt in 0..8 {
        let what = format!("40 MB past the declared size (attempt {attempt})");
        let resp = alice
            .patch(&url, 1000, bytes.clone())
            .await
            .with_context(|| format!("{what}: no answer"))?;
        expect_api_error(resp, StatusCode::BAD_REQUEST, &what).await?;
    }
    ensure!(alice.upload_offset(&url).await? == 1000);
    let resp = alice.patch(&url, 1000, bytes[1000..].to_vec()).await?;
    expect_status(resp, StatusCode::NO_CONTENT, "the rest").await?;
    let listed = alice.tree("alice", "big", "").await?;
    ensure!(
        listed.len() == 1 && listed[0]["sha256"] == sha256_hex(&bytes)?,
        "{listed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_hung_patch_is_taken_over_by_head_and_the_next_patch_so_the_upload_resumes_at_once(
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    const SIZE: usize = 10_000_000;
    const SENT: usize = 3_000_000;
    let hub = Hub::start().await?;
    let token = user_with_token(&hub, "lena").await?;
    let lena = Api::new(&hub, &token);
    lena.create("laptop", json!({})).await?;
    let bytes = seeded_bytes(SIZE, 11);
    let upload = lena
        .started_upload("lena", "laptop", "notes.bin", SIZE as u64)
        .await?;
    let url = upload["url"].as_str().unwrap_or_default().to_owned();

    // A PATCH whose connection hangs (a laptop closed mid-upload): 3 MB of the 10 MB it
    // declared, then nothing, the socket left open.
    let mut hung = tokio::net::TcpStream::connect(hub.addr()).await?;
    let head = format!(
        "PATCH {url} HTTP/1.1\r\nHost: {}\r\nAuthorization: token {token}\r\n\
         Tus-Resumable: {TUS}\r\nUpload-Offset: 0\r\nContent-Type: {OFFSET_OCTETS}\r\n\
         Content-Length: {SIZE}\r\n\r\n",
        hub.addr()
    );
    hung.write_all(head.as_bytes()).await?;
    hung.write_all(&bytes[..SENT]).await?;
    hung.flush().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // HEAD answers at once with what arrived, and the next PATCH goes on from there.
    let asked = Instant::now();
    let offset = tokio::time::timeout(Duration::from_secs(10), lena.upload_offset(&url))
        .await
        .context("HEAD waited on the hung PATCH for 10 s")??;
    ensure!(
        asked.elapsed() < Duration::from_secs(5),
        "HEAD took {:?}",
        asked.elapsed()
    );
    ensure!(
        offset == SENT as u64,
        "HEAD answered {offset}, not the {SENT} bytes that arrived"
    );
    ensure!(
        lena.tree("lena", "laptop", "").await?.is_empty(),
        "a partial file is listed"
    );
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        lena.patch(&url, offset, bytes[SENT..].to_vec()),
    )
    .await
    .context("the resumed PATCH did not finish in 30 s")??;
    expect_status(resp, StatusCode::NO_CONTENT, "the resumed PATCH").await?;
    let listed = lena.tree("lena", "laptop", "").await?;
    ensure!(
        listed.len() == 1
            && listed[0]["size"] == json!(SIZE)
            && listed[0]["sha256"] == sha256_hex(&bytes)?,
        "{listed:?}"
    );
    // The hung connection sending more now changes nothing.
    let _ = hung.write_all(&bytes[SENT..SENT + 1000]).await;
    drop(hung);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed_again = lena.tree("lena", "laptop", "").await?;
    ensure!(listed_again == listed, "{listed_again:?}");
    ensure!(lena.download("lena", "laptop", "notes.bin").await? == bytes);
    Ok(())
}
