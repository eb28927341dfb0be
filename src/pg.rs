//! Connections (to be written).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PgError(pub String);
pub fn describe(e: &tokio_postgres::Error) -> String {
    e.to_string()
}
