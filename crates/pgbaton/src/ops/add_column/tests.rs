use super::*;
use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, statements, table};
use crate::plan::Probe;
use crate::step::Action;

/// `users` (pk `id`, `name`), `Weird "T"` (pk `Key Col`), `orgs` (pk `id`) and a table
/// without any key.
fn base() -> Schema {
    schema(vec![
        table("users", &[("id", "integer", false), ("name", "text", true)]),
        table("Weird \"T\"", &[("Key Col", "bigint", false)]),
        table("orgs", &[("id", "bigint", false)]),
        {
            let mut t = table("nokey", &[]);
            t.columns.push(schema::Column::new(Ident::new("v"), "text"));
            t
        },
    ])
}

/// A context where these defaults have been probed: `volatile` ones are, the rest are not.
fn probed(defaults: &[(&str, &str, bool)]) -> PlanContext {
    let mut c = ctx(150004);
    for (ty, expr, volatile) in defaults {
        c.facts.answers.insert(
            Probe::DefaultIsVolatile {
                type_name: ty.to_string(),
                expr: expr.to_string(),
            },
            *volatile,
        );
    }
    c
}

#[test]
fn nullable_with_constant_default_is_one_catalog_change() {
    let c = probed(&[("integer", "0", false)]);
    let ops = "  - add_column:\n      table: users\n      column: {name: age, type: integer, nullable: true, default: \"0\", comment: it's the age}\n";
    let (plan, after) = plan_ops(&base(), &c, ops).unwrap();
    insta::assert_snapshot!("nullable_constant_default", render(&plan));
    assert!(c.missing_probes().is_empty());
    assert!(plan.lock_violations().is_empty());
    // No trigger, no backfill: the default fills existing rows in the catalog.
    assert_eq!(plan.start.len(), 1);
    assert_eq!(
        statements(&plan.start),
        vec![
            "ALTER TABLE \"public\".\"users\" ADD COLUMN \"_pgbaton_new_age\" integer DEFAULT (0)",
            "COMMENT ON COLUMN \"public\".\"users\".\"_pgbaton_new_age\" IS 'it''s the age'",
        ]
    );
    assert_eq!(
        statements(&plan.complete),
        vec!["ALTER TABLE \"public\".\"users\" RENAME COLUMN \"_pgbaton_new_age\" TO \"age\""]
    );
    assert_eq!(
        statements(&plan.rollback),
        vec![
            "ALTER TABLE IF EXISTS \"public\".\"users\" DROP COLUMN IF EXISTS \"_pgbaton_new_age\""
        ]
    );
    let col = after
        .table("users")
        .and_then(|t| t.column("age"))
        .expect("age");
    assert_eq!(col.physical.as_str(), "_pgbaton_new_age");
    assert!(col.nullable);
    assert_eq!(col.default.as_deref(), Some("0"));
    assert_eq!(col.comment.as_deref(), Some("it's the age"));
}

#[test]
fn not_null_with_constant_default_is_inline() {
    let c = probed(&[("integer", "18", false)]);
    let ops = "  - add_column:\n      table: users\n      column: {name: age, type: integer, default: \"18\"}\n";
    let (plan, after) = plan_ops(&base(), &c, ops).unwrap();
    assert_eq!(
            statements(&plan.start),
            vec!["ALTER TABLE \"public\".\"users\" ADD COLUMN \"_pgbaton_new_age\" integer DEFAULT (18) NOT NULL"]
        );
    assert_eq!(plan.complete.len(), 1);
    assert!(
        !after
            .table("users")
            .and_then(|t| t.column("age"))
            .expect("age")
            .nullable
    );
}

#[test]
fn not_null_with_up_and_every_constraint() {
    let ops = r#"  - add_column:
      table: users
      up: upper(name)
      column:
        name: code
        type: varchar(20)
        unique: true
        check: {name: code_len, constraint: "length(code) > 1 AND code <> name"}
        references: {name: code_fk, table: Weird "T", column: Key Col, on_delete: CASCADE}
"#;
    let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
    insta::assert_snapshot!("not_null_up_constraints", render(&plan));
    assert!(plan.lock_violations().is_empty());
    let kinds: Vec<(Work, LockLevel)> = plan.start.iter().map(|s| (s.work, s.lock)).collect();
    assert_eq!(
        kinds,
        vec![
            (Work::Catalog, LockLevel::AccessExclusive), // add column
            (Work::Catalog, LockLevel::ShareRowExclusive), // open the write window
            (Work::Batched, LockLevel::RowExclusive),    // backfill (fill)
            (Work::Catalog, LockLevel::AccessExclusive), // trigger
            (Work::Catalog, LockLevel::ShareRowExclusive), // count writes per version
            (Work::Catalog, LockLevel::AccessExclusive), // NOT VALID constraints
            (Work::Batched, LockLevel::RowExclusive),    // catch-up
            (Work::Concurrent, LockLevel::ShareUpdateExclusive), // unique index
        ]
    );
    // The fill runs before the trigger; the checks come after it (an old-version insert
    // during the fill leaves the column empty), then the catch-up.
    let Action::Backfill(spec) = &plan.start[2].action else {
        panic!("expected the backfill")
    };
    assert_eq!(spec.key, BackfillKey::Columns(vec![Ident::new("id")]));
    assert_eq!(spec.assignments[0].target.as_str(), "_pgbaton_new_code");
    assert_eq!(spec.assignments[0].expr.as_str(), "upper(name)");
    assert!(spec.pass.is_fill() && spec.window.is_some());
    let Action::Backfill(catch_up) = &plan.start[6].action else {
        panic!("expected the catch-up")
    };
    assert_eq!(catch_up.key, BackfillKey::Ctid);
    assert_eq!(catch_up.pass, crate::step::BackfillPass::CatchUp);
    assert_eq!(catch_up.assignments, spec.assignments);
    // The check names the column by its temporary name, and nothing else changes.
    let guard = statements(&plan.start[5..6]);
    assert!(guard[1].contains(
        "CHECK (length(\"_pgbaton_new_code\") > 1 AND \"_pgbaton_new_code\" <> name) NOT VALID"
    ));
    // Complete: three validations that block nobody, then one short transaction.
    let validate: Vec<LockLevel> = plan.complete[..3].iter().map(|s| s.lock).collect();
    assert_eq!(validate, vec![LockLevel::ShareUpdateExclusive; 3]);
    assert_eq!(plan.complete.len(), 4);

    let t = after.table("users").expect("users");
    let col = t.column("code").expect("code");
    assert!(!col.nullable && col.unique);
    assert_eq!(
        t.constraint("code_fk").and_then(|c| c.references.clone()),
        Some((
            QualName::new("public", "Weird \"T\""),
            vec![Ident::new("Key Col")]
        ))
    );
    assert!(t.constraint("code_len").is_some_and(|c| !c.validated));
}

#[test]
fn volatile_default_fills_rows_in_batches() {
    let c = probed(&[("uuid", "gen_random_uuid()", true)]);
    let ops = "  - add_column:\n      table: nokey\n      column: {name: token, type: uuid, default: gen_random_uuid()}\n";
    let (plan, _) = plan_ops(&base(), &c, ops).unwrap();
    insta::assert_snapshot!("volatile_default", render(&plan));
    assert!(plan.lock_violations().is_empty());
    // Nullable first, the default set afterwards: no rewrite under ACCESS EXCLUSIVE.
    assert_eq!(
            statements(&plan.start[..1]),
            vec![
                "ALTER TABLE \"public\".\"nokey\" ADD COLUMN \"_pgbaton_new_token\" uuid",
                "ALTER TABLE \"public\".\"nokey\" ALTER COLUMN \"_pgbaton_new_token\" SET DEFAULT (gen_random_uuid())",
            ]
        );
    let Some(Action::Backfill(spec)) = plan.start.iter().find_map(|s| match &s.action {
        a @ Action::Backfill(_) => Some(a),
        _ => None,
    }) else {
        panic!("expected a backfill")
    };
    // No key: ctid ranges. Only NULLs are filled, so an old-version insert keeps the value
    // its default gave it.
    assert_eq!(spec.key, BackfillKey::Ctid);
    assert_eq!(
        spec.assignments[0].expr.as_str(),
        "coalesce(\"_pgbaton_new_token\", (gen_random_uuid()))"
    );
    assert!(spec.scope.contains(&(
        Ident::new("_pgbaton_new_token"),
        Ident::new("_pgbaton_new_token")
    )));
}

#[test]
fn unprobed_default_is_planned_as_volatile_and_recorded() {
    let c = ctx(150004);
    let ops = "  - add_column:\n      table: users\n      column: {name: n, type: int, nullable: true, default: \"1\"}\n";
    let (plan, _) = plan_ops(&base(), &c, ops).unwrap();
    assert!(c.missing_probes().contains(&Probe::DefaultIsVolatile {
        type_name: "int".into(),
        expr: "1".into()
    }));
    assert!(statements(&plan.start)
        .iter()
        .any(|s| s.contains("SET DEFAULT (1)")));
}

#[test]
fn serial_gets_an_owned_sequence_and_a_batched_fill() {
    let ops =
        "  - add_column:\n      table: users\n      column: {name: counter, type: bigserial}\n";
    let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
    insta::assert_snapshot!("serial", render(&plan));
    assert!(plan.lock_violations().is_empty());
    let col = after
        .table("users")
        .and_then(|t| t.column("counter"))
        .expect("counter");
    assert_eq!(col.type_name, "bigint");
    assert!(!col.nullable);
    assert_eq!(
        col.default.as_deref(),
        Some("nextval('\"public\".\"users_counter_seq\"'::regclass)")
    );
}

#[test]
fn on_a_table_created_here_the_definition_is_whole() {
    let ops = r#"  - create_table:
      name: items
      columns: [{name: id, type: integer, pk: true}]
  - add_column:
      table: items
      column:
        name: sku
        type: text
        unique: true
        default: "'x'"
        check: {name: sku_check, constraint: sku <> ''}
"#;
    let c = ctx(150004);
    let (plan, after) = plan_ops(&base(), &c, ops).unwrap();
    insta::assert_snapshot!("created_here", render(&plan));
    assert!(c.missing_probes().is_empty(), "no probe for a new table");
    // No trigger, no backfill, no validation: nothing else sees the table yet.
    assert!(plan
        .start
        .iter()
        .all(|s| s.work == Work::Catalog && s.lock != LockLevel::RowExclusive));
    assert!(statements(&plan.complete)
        .iter()
        .all(|s| !s.contains("VALIDATE")));
    let t = after.table("items").expect("items");
    assert!(t.constraint("items_sku_key").is_some());
    assert!(t.column("sku").is_some_and(|c| !c.nullable));
}

#[test]
fn odd_identifiers_are_quoted_everywhere() {
    let ops = r#"  - add_column:
      table: Weird "T"
      up: "\"Key Col\" * 2"
      column:
        name: Mixed "Case"
        type: bigint
        check: {name: odd "check", constraint: "\"Mixed \"\"Case\"\"\" > 0"}
"#;
    let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
    insta::assert_snapshot!("odd_identifiers", render(&plan));
    let all = statements(&plan.start).join("\n");
    assert!(all.contains(
            "ALTER TABLE \"public\".\"Weird \"\"T\"\"\" ADD COLUMN \"_pgbaton_new_Mixed \"\"Case\"\"\" bigint"
        ));
    assert!(all.contains(
            "ADD CONSTRAINT \"odd \"\"check\"\"\" CHECK (\"_pgbaton_new_Mixed \"\"Case\"\"\" > 0) NOT VALID"
        ));
    assert!(statements(&plan.complete).iter().any(|s| s
        .ends_with("RENAME COLUMN \"_pgbaton_new_Mixed \"\"Case\"\"\" TO \"Mixed \"\"Case\"\"\"")));
    assert!(after
        .table("Weird \"T\"")
        .and_then(|t| t.column("Mixed \"Case\""))
        .is_some());
}

#[test]
fn two_columns_on_one_table_share_a_trigger_and_a_backfill() {
    let ops = "  - add_column:\n      table: users\n      up: upper(name)\n      column: {name: a, type: text}\n  - add_column:\n      table: users\n      up: lower(name)\n      column: {name: b, type: text}\n";
    let (plan, _) = plan_ops(&base(), &ctx(150004), ops).unwrap();
    let backfills = plan
        .start
        .iter()
        .filter(|s| matches!(&s.action, Action::Backfill(b) if b.pass.is_fill()))
        .count();
    assert_eq!(backfills, 1);
    let renames: Vec<String> = statements(&plan.complete)
        .into_iter()
        .filter(|s| s.contains("RENAME COLUMN"))
        .collect();
    assert_eq!(renames.len(), 2);
}

#[test]
fn validation_errors_name_the_field() {
    let c = probed(&[("int", "1", false)]);
    let err = |ops: &str| plan_error(&base(), &c, ops);
    let op = |body: &str| format!("  - add_column:\n{body}");
    assert_eq!(
        err(&op(
            "      table: nope\n      column: {name: a, type: int, nullable: true}\n"
        )),
        "table: table \"nope\" does not exist"
    );
    assert_eq!(
        err(&op(
            "      table: users\n      column: {name: name, type: int, nullable: true}\n"
        )),
        "column.name: column \"name\" already exists in table \"users\""
    );
    assert_eq!(
        err(&op(
            "      table: users\n      column: {name: a, type: int}\n"
        )),
        "up: column \"a\" is NOT NULL without a default: \"up\" is required to fill it for \
             existing rows and for rows the old version writes"
    );
    assert!(err(&op(
        "      table: users\n      column: {name: a, type: int, pk: true, default: \"1\"}\n"
    ))
    .starts_with("column.pk: adding primary key columns is not supported"));
    assert!(err(&op("      table: users\n      column: {name: a, type: int, nullable: true, generated: {expression: id + 1}}\n"))
            .starts_with("column.generated: adding generated columns"));
    assert_eq!(
            err(&op("      table: users\n      column: {name: a, type: serial, default: \"1\"}\n")),
            "column.default: column \"a\" has type serial and a default: a serial type is its own default"
        );
    assert_eq!(
            err(&op("      table: users\n      column: {name: a, type: int, nullable: true, check: {name: users_pkey, constraint: a > 0}}\n")),
            "column.check.name: constraint \"users_pkey\" already exists on table \"users\""
        );
    assert_eq!(
            err(&op("      table: users\n      column: {name: a, type: int, nullable: true, check: {name: c, constraint: \"\"}}\n")),
            "column.check.constraint: the check constraint has no expression"
        );
    assert_eq!(
            err(&op("      table: users\n      column: {name: a, type: int, nullable: true, references: {name: f, table: nope, column: id}}\n")),
            "column.references.table: table \"nope\" does not exist"
        );
    assert_eq!(
            err(&op("      table: users\n      column: {name: a, type: int, nullable: true, references: {name: f, table: orgs, column: nope}}\n")),
            "column.references.column: column \"nope\" does not exist on table \"orgs\""
        );
    assert_eq!(
            err(&op("      table: orgs\n      column: {name: a, type: text, nullable: true, references: {name: f, table: users, column: name}}\n")),
            "column.references.column: column \"name\" of table \"users\" is not a primary key or \
             unique: a foreign key must reference one"
        );
    assert_eq!(
            err(&op("      table: users\n      column: {name: a, type: int, nullable: true, references: {name: f, table: orgs, column: id, match_type: PARTIAL}}\n")),
            "column.references.match_type: MATCH PARTIAL is not implemented by PostgreSQL"
        );
    // The unique constraint's name is taken by an index of another table.
    let mut s = base();
    if let Some(t) = s.table_mut("orgs") {
        t.indexes[0].name = Ident::new("users_a_key");
    }
    assert_eq!(
            plan_error(&s, &c, &op("      table: users\n      column: {name: a, type: int, nullable: true, unique: true}\n")),
            "column.unique: the unique constraint of column \"a\" would be named \"users_a_key\", \
             which already exists"
        );
    // A second add of the same column in one migration sees the first.
    assert_eq!(
        err(&format!(
            "{}{}",
            op("      table: users\n      column: {name: a, type: int, nullable: true}\n"),
            op("      table: users\n      column: {name: a, type: int, nullable: true}\n")
        )),
        "column.name: column \"a\" already exists in table \"users\""
    );
}

#[test]
fn check_uses_physical_names_of_columns_renamed_earlier() {
    let ops = "  - rename_column: {table: users, from: name, to: full name}\n  - add_column:\n      table: users\n      column: {name: n, type: int, nullable: true, check: {name: c, constraint: \"n > length(\\\"full name\\\")\"}}\n";
    let (plan, _) = plan_ops(&base(), &ctx(150004), ops).unwrap();
    assert!(statements(&plan.start)
        .iter()
        .any(|s| s.ends_with("CHECK (\"_pgbaton_new_n\" > length(\"name\")) NOT VALID")));
}

#[test]
fn not_null_without_up_is_fine_on_a_table_created_here() {
    let ops = "  - create_table:\n      name: items\n      columns: [{name: id, type: integer, pk: true}]\n  - add_column:\n      table: items\n      column: {name: n, type: int}\n";
    let (plan, _) = plan_ops(&base(), &ctx(150004), ops).unwrap();
    assert!(statements(&plan.start)
        .iter()
        .any(|s| s.ends_with("ADD COLUMN \"_pgbaton_new_n\" int NOT NULL")));
}
