//! The Kubernetes cluster stand-in for hub-level tests: the spawner tests' helper, included by
//! path so both crates share one copy (`mod kube_support;` then `kube_support::KubeCluster`).
#![allow(dead_code)]

#[path = "../../../spawner/tests/support/kube_cluster.rs"]
mod kube_cluster;

pub use kube_cluster::*;
