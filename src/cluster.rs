//! Throwaway cluster (to be written).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(pub String);
