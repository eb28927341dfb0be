use super::*;
use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};

fn tickets() -> Schema {
    let t = table(
        "tickets",
        &[
            ("ticket_id", "integer", false),
            ("sellers_name", "varchar(255)", false),
            ("sellers_zip", "integer", false),
        ],
    );
    let mut s = table(
        "sellers",
        &[
            ("id", "integer", false),
            ("name", "varchar(255)", false),
            ("zip", "integer", false),
        ],
    );
    s.indexes.push(Index {
        name: Ident::new("sellers_name_zip_key"),
        columns: vec![Ident::new("name"), Ident::new("zip")],
        unique: true,
        primary: false,
        valid: true,
        has_expressions: false,
        predicate: None,
        definition: String::new(),
        constraint: None,
    });
    schema(vec![t, s])
}

const CHECK: &str = "  - create_constraint:
      type: check
      table: tickets
      name: check_zip_name
      columns: [sellers_name, sellers_zip]
      check: sellers_name = 'alice' OR sellers_zip > 0
      up:
        sellers_name: sellers_name
        sellers_zip: SELECT CASE WHEN sellers_name != 'alice' AND sellers_zip <= 0 THEN 123 ELSE sellers_zip END
      down:
        sellers_name: sellers_name
        sellers_zip: sellers_zip
";

#[test]
fn check_on_copies() {
    let (plan, after) = plan_ops(&tickets(), &ctx(150004), CHECK).unwrap();
    assert!(
        plan.lock_violations().is_empty(),
        "{:?}",
        plan.lock_violations()
    );
    insta::assert_snapshot!("check", render(&plan));
    let start = render(&plan);
    assert!(start.contains(
            "ALTER TABLE \"public\".\"tickets\" ADD CONSTRAINT \"check_zip_name\" CHECK (\"_pgbaton_new_sellers_name\" = 'alice' OR \"_pgbaton_new_sellers_zip\" > 0) NOT VALID"
        ));
    let t = after.table("tickets").unwrap();
    assert_eq!(
        t.column("sellers_zip").unwrap().physical.as_str(),
        "_pgbaton_new_sellers_zip"
    );
    assert!(t.constraint("check_zip_name").is_some());
}

#[test]
fn unique_on_copies() {
    let ops = "  - create_constraint:
      type: unique
      table: tickets
      name: unique_zip_name
      columns: [sellers_name, sellers_zip]
      index_parameters: {storage_parameters: fillfactor = 80, include_columns: [ticket_id]}
      up: {sellers_name: sellers_name, sellers_zip: sellers_zip}
      down: {sellers_name: sellers_name, sellers_zip: sellers_zip}
";
    let (plan, after) = plan_ops(&tickets(), &ctx(150004), ops).unwrap();
    assert!(plan.lock_violations().is_empty());
    insta::assert_snapshot!("unique", render(&plan));
    let (_, idx) = after.index("unique_zip_name").unwrap();
    assert_eq!(
        idx.constraint.as_ref().map(Ident::as_str),
        Some("unique_zip_name")
    );
}

#[test]
fn foreign_key_on_copies() {
    let ops = "  - create_constraint:
      type: foreign_key
      table: tickets
      name: fk_sellers
      columns: [sellers_name, sellers_zip]
      references:
        table: sellers
        columns: [name, zip]
        on_delete: SET NULL
        on_delete_set_columns: [sellers_zip]
      up: {sellers_name: sellers_name, sellers_zip: sellers_zip}
      down: {sellers_name: sellers_name, sellers_zip: sellers_zip}
";
    let (plan, _) = plan_ops(&tickets(), &ctx(150004), ops).unwrap();
    let text = render(&plan);
    assert!(text.contains("ADD CONSTRAINT \"fk_sellers\" FOREIGN KEY (\"_pgbaton_new_sellers_name\", \"_pgbaton_new_sellers_zip\") REFERENCES \"public\".\"sellers\" (\"name\", \"zip\") MATCH SIMPLE ON DELETE SET NULL (\"_pgbaton_new_sellers_zip\") ON UPDATE NO ACTION NOT VALID"), "{text}");
    assert!(text.contains("VALIDATE CONSTRAINT \"fk_sellers\""));
    assert!(plan.lock_violations().is_empty());
}

#[test]
fn primary_key_after_not_null() {
    let mut s = tickets();
    let t = s.table_mut("sellers").unwrap();
    t.constraints.clear();
    t.indexes.clear();
    let ops = "  - create_constraint:
      type: primary_key
      table: sellers
      name: sellers_pk
      columns: [id]
      up: {id: id}
      down: {id: id}
";
    let (plan, after) = plan_ops(&s, &ctx(150004), ops).unwrap();
    assert!(plan.lock_violations().is_empty());
    let contract = plan
        .complete
        .iter()
        .find(|s| s.title.starts_with("contract"))
        .unwrap()
        .statements();
    let pos = |needle: &str| {
        contract
            .iter()
            .position(|s| s.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {contract:#?}"))
    };
    assert!(pos("SET NOT NULL") < pos("PRIMARY KEY USING INDEX \"sellers_pk\""));
    assert!(pos("RENAME COLUMN \"_pgbaton_new_id\" TO \"id\"") < pos("PRIMARY KEY USING INDEX"));
    assert!(
        !after
            .table("sellers")
            .unwrap()
            .column("id")
            .unwrap()
            .nullable
    );
    assert!(after.table("sellers").unwrap().primary_key().is_some());
}

#[test]
fn new_table_gets_the_constraint_directly() {
    let mut s = tickets();
    let t = s.table_mut("sellers").unwrap();
    t.created_here = true;
    t.has_rows = false;
    t.constraints.clear();
    t.indexes.clear();
    let ops = "  - create_constraint: {type: primary_key, table: sellers, name: sellers_pk, columns: [id], up: {id: id}, down: {id: id}}\n";
    let (plan, _) = plan_ops(&s, &ctx(150004), ops).unwrap();
    insta::assert_snapshot!("new_table", render(&plan));
}

#[test]
fn validation_errors() {
    let s = tickets();
    let c = ctx(150004);
    let e = |body: &str| plan_error(&s, &c, &format!("  - create_constraint: {{{body}}}\n"));
    let cols =
        "columns: [sellers_zip], up: {sellers_zip: sellers_zip}, down: {sellers_zip: sellers_zip}";
    assert_eq!(
        e(&format!(
            "type: check, table: nope, name: c, check: 'true', {cols}"
        )),
        "table: table \"nope\" does not exist"
    );
    assert_eq!(
        e(&format!(
            "type: check, table: tickets, name: tickets_pkey, check: 'true', {cols}"
        )),
        "name: constraint \"tickets_pkey\" already exists on table \"tickets\""
    );
    assert!(e(&format!(
        "type: unique, table: tickets, name: sellers_pkey, {cols}"
    ))
    .starts_with("name: a unique constraint gets an index"));
    assert_eq!(
        e(&format!("type: check, table: tickets, name: c, {cols}")),
        "check: a check constraint needs its expression"
    );
    assert_eq!(
            e("type: check, table: tickets, name: c, check: 'true', columns: [nope], up: {nope: x}, down: {nope: x}"),
            "columns[0]: column \"nope\" does not exist in table \"tickets\""
        );
    assert_eq!(
            e("type: unique, table: tickets, name: c, columns: [sellers_zip], up: {sellers_zip: x}, down: {}"),
            "down: `down` has no SQL for column \"sellers_zip\" (every constrained column needs one)"
        );
    assert_eq!(
            e("type: unique, table: tickets, name: c, columns: [sellers_zip], up: {}, down: {sellers_zip: x}"),
            "up: `up` has no SQL for column \"sellers_zip\" (every constrained column needs one)"
        );
    assert_eq!(
            e("type: unique, table: tickets, name: c, columns: [sellers_zip], up: {sellers_zip: x, ticket_id: y}, down: {sellers_zip: x}"),
            "up.ticket_id: column \"ticket_id\" is not one of the constraint's columns"
        );
    assert_eq!(
        e(&format!(
            "type: foreign_key, table: tickets, name: c, {cols}"
        )),
        "references: a foreign key needs `references`"
    );
    assert_eq!(
            e(&format!("type: foreign_key, table: tickets, name: c, references: {{table: nope, columns: [id]}}, {cols}")),
            "references.table: table \"nope\" does not exist"
        );
    assert_eq!(
            e(&format!("type: foreign_key, table: tickets, name: c, references: {{table: sellers, columns: [nope]}}, {cols}")),
            "references.columns[0]: column \"nope\" does not exist in table \"sellers\""
        );
    assert_eq!(
            e(&format!("type: foreign_key, table: tickets, name: c, references: {{table: sellers, columns: [zip]}}, {cols}")),
            "references.columns: table \"sellers\" has no primary key, unique constraint or unique index on (zip), which a foreign key needs"
        );
    assert!(e(&format!(
        "type: primary_key, table: tickets, name: c, {cols}"
    ))
    .starts_with("type: table \"tickets\" already has a primary key"));
    assert!(
        e(&format!("type: exclude, table: tickets, name: c, {cols}"))
            .starts_with("type: an exclusion constraint cannot be added without blocking writes")
    );
    assert!(e(&format!(
        "type: unique, table: tickets, name: c, check: 'true', {cols}"
    ))
    .starts_with("check: "));
    assert!(e(&format!(
        "type: check, table: tickets, name: c, check: 'true', index_parameters: {{}}, {cols}"
    ))
    .starts_with("index_parameters: "));
    assert_eq!(
            e("type: unique, table: tickets, name: c, columns: [sellers_zip, sellers_zip], up: {sellers_zip: x}, down: {sellers_zip: x}"),
            "columns[1]: column \"sellers_zip\" is listed twice"
        );
    assert!(plan_error(
        &s,
        &ctx(140002),
        &format!("  - create_constraint: {{type: unique, table: tickets, name: c, {cols}}}\n")
    )
    .contains("14.4"));
}
