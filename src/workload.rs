//! workload (to be written)
