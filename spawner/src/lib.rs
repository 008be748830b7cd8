//! Spawner contract.
