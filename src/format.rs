//! Migration files (to be written by the format work).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);
