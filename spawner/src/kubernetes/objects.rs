//! The Kubernetes objects of one cluster, built from a spawn spec: pure functions, no API
//! calls.
