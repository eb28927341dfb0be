//! `set_replica_identity`: sets a table's replica identity (deprecated by pgroll in favour of
//! raw SQL).
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ops::common::{keyword_enum, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `set_replica_identity`: sets the replica identity of `table`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpSetReplicaIdentity {
    pub table: String,
    pub identity: ReplicaIdentity,
}

/// The replica identity to set. pgroll's schema marks `index` as required, but its documentation
/// and its code need it only for type `index`, so it is optional here.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaIdentity {
    #[serde(rename = "type")]
    pub type_: ReplicaIdentityType,
    #[serde(default)]
    pub index: Option<String>,
}

keyword_enum! {
    /// Replica identity type (any letter case in the file, as pgroll).
    pub enum ReplicaIdentityType (ci) {
        Default => "default",
        Full => "full",
        Nothing => "nothing",
        Index => "index",
    }
}

impl OpSetReplicaIdentity {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "set_replica_identity";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.nested("identity", |n| {
            n.opt("index", self.identity.index.as_deref())
        });
    }
}

impl Operation for OpSetReplicaIdentity {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("set_replica_identity: validate")
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("set_replica_identity: start")
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("set_replica_identity: complete")
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("set_replica_identity: rollback")
    }

    fn apply(&self, _schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("set_replica_identity: apply")
    }
}
