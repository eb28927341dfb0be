//! Operations (to be written)
