use super::*;
use crate::ops::common::testing::{ctx, plan_ops, render, schema, table};
use crate::plan::Probe;
use crate::schema::Index;
use crate::step::Action;

/// `users (id integer PK, email varchar(100) NOT NULL + index, bio text)` and
/// `posts (id, user_id → users.id)`, with the catalog's definitions filled in.
fn shop() -> Schema {
    let mut users = table(
        "users",
        &[
            ("id", "integer", false),
            ("email", "character varying(100)", false),
            ("bio", "text", true),
        ],
    );
    users.indexes[0].definition =
        "CREATE UNIQUE INDEX users_pkey ON public.users USING btree (id)".into();
    users.columns[0].default = Some("nextval('users_id_seq'::regclass)".into());
    users.columns[1].comment = Some("where to write".into());
    users.indexes.push(Index {
        name: Ident::new("users_email_idx"),
        columns: vec![Ident::new("email")],
        unique: false,
        primary: false,
        valid: true,
        has_expressions: false,
        predicate: None,
        definition: "CREATE INDEX users_email_idx ON public.users USING btree (email)".into(),
        constraint: None,
    });
    let mut posts = table(
        "posts",
        &[("id", "integer", false), ("user_id", "integer", true)],
    );
    posts.indexes[0].definition =
        "CREATE UNIQUE INDEX posts_pkey ON public.posts USING btree (id)".into();
    posts.constraints.push(Constraint {
        name: Ident::new("posts_user_id_fkey"),
        kind: ConstraintKind::ForeignKey,
        columns: vec![Ident::new("user_id")],
        definition: "FOREIGN KEY (user_id) REFERENCES users(id)".into(),
        validated: true,
        references: Some((QualName::new("public", "users"), vec![Ident::new("id")])),
    });
    schema(vec![users, posts])
}

fn no_rewrite(mut c: PlanContext, from: &str, to: &str) -> PlanContext {
    c.facts.answers.insert(
        Probe::TypeChangeRewrites {
            from: from.into(),
            to: to.into(),
        },
        false,
    );
    c
}

#[test]
fn default_and_comment_are_catalog_only_at_complete() {
    let ops = "  - alter_column:\n      table: users\n      column: bio\n      default: '''none'''\n      comment: about me\n";
    let (plan, after) = plan_ops(&shop(), &ctx(150004), ops).unwrap();
    assert!(
        plan.start.is_empty() && plan.rollback.is_empty(),
        "{}",
        render(&plan)
    );
    insta::assert_snapshot!("default_and_comment", render(&plan));
    let bio = after.table("users").unwrap().column("bio").unwrap();
    assert_eq!(bio.default.as_deref(), Some("'none'"));
    assert_eq!(bio.physical.as_str(), "bio");
}

#[test]
fn widening_without_rewrite_is_done_in_place_at_complete() {
    let ops = "  - alter_column:\n      table: users\n      column: email\n      type: varchar(200)\n      up: email\n      down: email\n";
    let c = no_rewrite(ctx(150004), "character varying(100)", "varchar(200)");
    let (plan, after) = plan_ops(&shop(), &c, ops).unwrap();
    assert!(plan.start.is_empty(), "{}", render(&plan));
    assert!(plan.lock_violations().is_empty());
    insta::assert_snapshot!("widening_in_place", render(&plan));
    let email = after.table("users").unwrap().column("email").unwrap();
    assert_eq!(
        (email.type_name.as_str(), email.physical.as_str()),
        ("varchar(200)", "email")
    );
}

#[test]
fn an_unanswered_probe_plans_the_copy_and_asks() {
    let ops = "  - alter_column:\n      table: users\n      column: email\n      type: varchar(200)\n      up: email\n      down: email\n";
    let c = ctx(150004);
    let (plan, after) = plan_ops(&shop(), &c, ops).unwrap();
    assert!(c.missing_probes().contains(&Probe::TypeChangeRewrites {
        from: "character varying(100)".into(),
        to: "varchar(200)".into()
    }));
    assert!(plan
        .start
        .iter()
        .any(|s| s.title.starts_with("add copies of email")));
    assert_eq!(
        after
            .table("users")
            .unwrap()
            .column("email")
            .unwrap()
            .physical
            .as_str(),
        "_pgbaton_new_email"
    );
}

#[test]
fn a_referenced_column_never_changes_type_in_place() {
    let ops = "  - alter_column:\n      table: users\n      column: id\n      type: bigint\n      up: id\n      down: CAST(id AS integer)\n";
    let c = no_rewrite(ctx(150004), "integer", "bigint");
    let (plan, _) = plan_ops(&shop(), &c, ops).unwrap();
    assert!(plan.lock_violations().is_empty());
    insta::assert_snapshot!("primary_key_with_referencing_fk", render(&plan));
}

#[test]
fn example_35_is_one_copy() {
    let ops = r#"  - alter_column:
      table: users
      column: bio
      type: varchar(500)
      default: '''unknown'''
      nullable: false
      comment: the bio
      unique:
        name: users_bio_unique
      check:
        name: bio_length
        constraint: length(bio) > 3
      up: SELECT CASE WHEN bio IS NULL OR LENGTH(bio) <= 3 THEN 'placeholder' ELSE bio END
      down: bio
"#;
    let (plan, after) = plan_ops(&shop(), &ctx(150004), ops).unwrap();
    assert!(plan.lock_violations().is_empty());
    insta::assert_snapshot!("several_at_once", render(&plan));
    let t = after.table("users").unwrap();
    let bio = t.column("bio").unwrap();
    assert!(!bio.nullable && bio.unique);
    assert_eq!(bio.default.as_deref(), Some("'unknown'"));
    assert!(t.constraint("users_bio_unique").is_some() && t.constraint("bio_length").is_some());
}

#[test]
fn a_second_alter_of_the_column_changes_the_same_copy() {
    let ops = "  - alter_column:\n      table: users\n      column: bio\n      up: INITCAP(bio)\n      down: bio\n      check: {name: cap, constraint: \"bio ~ '^[A-Z]'\"}\n  - alter_column:\n      table: users\n      column: bio\n      nullable: false\n      up: coalesce(bio, 'Jane')\n      down: bio\n  - alter_column:\n      table: users\n      column: email\n      type: text\n      up: email\n      down: email\n";
    let (plan, _) = plan_ops(&shop(), &ctx(150004), ops).unwrap();
    let adds: Vec<String> = plan
        .start
        .iter()
        .flat_map(|s| s.statements())
        .filter(|s| s.contains("ADD COLUMN IF NOT EXISTS \"_pgbaton_new_"))
        .collect();
    assert_eq!(adds.len(), 2, "{adds:#?}");
    let backfills: Vec<_> = plan
        .start
        .iter()
        .filter_map(|s| match &s.action {
            Action::Backfill(spec) if spec.pass.is_fill() => Some(spec),
            _ => None,
        })
        .collect();
    assert_eq!(backfills.len(), 1);
    let bio = backfills[0]
        .assignments
        .iter()
        .find(|a| a.target.as_str() == "_pgbaton_new_bio")
        .unwrap();
    assert_eq!(
        bio.expr.as_str(),
        "(SELECT (coalesce(bio, 'Jane')) FROM (SELECT (INITCAP(bio)) AS \"bio\") AS _pgbaton_prev)"
    );
}

#[test]
fn a_new_table_is_altered_in_place() {
    let mut s = shop();
    s.table_mut("posts").unwrap().created_here = true;
    s.table_mut("posts").unwrap().has_rows = false;
    let ops = "  - alter_column:\n      table: posts\n      column: user_id\n      type: bigint\n      nullable: false\n      references: {name: fk_user, table: users, column: id}\n      up: user_id\n      down: user_id\n";
    let (plan, _) = plan_ops(&s, &ctx(150004), ops).unwrap();
    insta::assert_snapshot!("new_table_in_place", render(&plan));
}

#[test]
fn validation_errors_name_the_field() {
    let err = |ops: &str| plan_ops(&shop(), &ctx(150004), ops).unwrap_err();
    let e = err("  - alter_column: {table: users, column: bio}\n");
    assert!(e.message.contains("makes no changes"), "{e}");
    let e = err("  - alter_column: {table: users, column: bio, type: int, up: bio}\n");
    assert_eq!(e.field, "down");
    let e = err("  - alter_column: {table: users, column: email, nullable: false, up: email}\n");
    assert_eq!(e.field, "nullable");
    let e = err("  - alter_column: {table: users, column: id, nullable: true, down: id}\n");
    assert!(e.message.contains("primary key"), "{e}");
    let e = err("  - alter_column: {table: users, column: bio, unique: {name: users_email_idx}}\n");
    assert_eq!(e.field, "unique.name");
    let e = err("  - alter_column: {table: posts, column: user_id, references: {name: f, table: users, column: bio}, up: user_id, down: user_id}\n");
    assert_eq!(e.field, "references.column");
}
