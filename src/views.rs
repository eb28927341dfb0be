//! views (to be written)
