//! Job states without Docker: a "registry" that accepts connections and never answers keeps a
//! job in `reading`; the next one waits in `queued`; cancelling works in both.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::time::Duration;

use imagebuilder::{BuilderConfig, Error, ImageBuilder, JobState, SaveRequest, WritableLayer};

/// Accepts TCP connections and holds them without a byte in reply.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64) {
            held.push(stream);
        }
    });
    addr
}

async fn wait_for(job: &imagebuilder::SaveJob, state: JobState) {
    let mut updates = job.subscribe();
    tokio::time::timeout(Duration::from_secs(10), async {
        while updates.borrow_and_update().state != state {
            updates.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never reached {state:?}: {:?}", job.status()));
}

#[tokio::test]
async fn a_second_save_waits_in_queued_and_both_can_be_cancelled() {
    let registry = silent_server();
    let upper = tempfile::tempdir().unwrap();
    let builder = ImageBuilder::new(BuilderConfig {
        max_concurrent_jobs: 1,
        ..BuilderConfig::default()
    });
    let request = |tag: &str| {
        SaveRequest::new(
            WritableLayer::at(upper.path()),
            format!("{registry}/xiji/base:1"),
            format!("{registry}/users/alice/env:{tag}"),
            "alice",
        )
    };
    let first = builder.start(request("a")).unwrap();
    wait_for(&first, JobState::Reading).await;
    let second = builder.start(request("b")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.status().state, JobState::Queued);
    assert_eq!(first.status().state, JobState::Reading);

    first.cancel();
    let first_status = first.subscribe();
    assert!(matches!(first.wait().await, Err(Error::Cancelled)));
    assert_eq!(first_status.borrow().state, JobState::Cancelled);

    // The slot is free: the second one starts reading, and can be cancelled too.
    wait_for(&second, JobState::Reading).await;
    second.cancel();
    assert!(matches!(second.wait().await, Err(Error::Cancelled)));
}

#[tokio::test]
async fn a_job_status_serialises_for_the_api() {
    let status = imagebuilder::JobStatus {
        state: JobState::Failed {
            reason: "the registry is down".into(),
        },
        progress: imagebuilder::ByteProgress {
            bytes_read: 10,
            total_estimate: 20,
            ..Default::default()
        },
        image: None,
    };
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["state"], "failed");
    assert_eq!(json["reason"], "the registry is down");
    assert_eq!(json["progress"]["bytes_read"], 10);
    assert_eq!(json["progress"]["total_estimate"], 20);
    let back: imagebuilder::JobStatus = serde_json::from_value(json).unwrap();
    assert_eq!(back, status);
}
