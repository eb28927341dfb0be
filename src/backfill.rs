//! backfill (to be written)
