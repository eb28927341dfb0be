//! Column duplication, as the operations call it: the machinery lives with the planner in
//! [`crate::copies`] (the planner renders the copies' steps when a plan is finished); this module
//! keeps the operations' paths to it.

pub use crate::copies::{
    apply, dup_name, duplicate, duplicate_without, is_temporary, not_null_name, ColumnCopy, Copies,
    DUP_PREFIX, NOT_NULL_PREFIX,
};
pub(crate) use crate::copies::{do_block, validate_step};
pub use crate::sql::rewrite::{is_plain_btree_index, rewrite_identifiers};
