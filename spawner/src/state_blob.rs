//! The state blob the hub keeps for each server: what every backend's reading of it shares.

use crate::SpawnerError;

/// The record a backend wrote into `state`, as `T`: `None` for an empty blob (`null` or `{}`:
/// nothing started), [`SpawnerError::InvalidState`] for one that is not a `T`. The backend
/// then checks that the record is its own.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    state: &serde_json::Value,
) -> Result<Option<T>, SpawnerError> {
    let empty = state.is_null() || state.as_object().is_some_and(|o| o.is_empty());
    if empty {
        return Ok(None);
    }
    serde_json::from_value(state.clone())
        .map(Some)
        .map_err(|e| SpawnerError::InvalidState(e.to_string()))
}
