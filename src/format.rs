//! format (to be written)
