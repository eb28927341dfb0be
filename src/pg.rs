//! pg (to be written)
