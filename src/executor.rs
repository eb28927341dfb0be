//! executor (to be written)
