//! Migration file format: every pgroll example parses to the expected operations, errors name
//! the file, line, column and field, and YAML and JSON of one migration read the same.

use std::path::{Path, PathBuf};

use pgbaton::format::{self, FileKind, FormatError, Migration, Problem};
use pgbaton::ident::RawSql;
use pgbaton::ops::{
    ConstraintType, CreateConstraintType, ForeignKeyAction, ForeignKeyMatchType,
    IdentityUserSpecifiedValues, IndexMethod, Nullable, Op, ReplicaIdentityType,
};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pgroll/examples")
}

/// Each example and the keys of its operations, in order.
const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "01_create_tables.yaml",
        &["create_table", "create_table", "create_table"],
    ),
    ("02_create_another_table.yaml", &["create_table"]),
    (
        "03_add_column.yaml",
        &["add_column", "add_column", "add_column"],
    ),
    ("04_rename_table.yaml", &["rename_table"]),
    ("05_sql.yaml", &["sql"]),
    ("06_add_column_to_sql_table.yaml", &["add_column"]),
    ("07_drop_table.yaml", &["drop_table"]),
    ("08_create_fruits_table.yaml", &["create_table"]),
    ("09_drop_column.yaml", &["drop_column"]),
    ("10_create_index.yaml", &["create_index"]),
    ("11_drop_index.yaml", &["drop_index"]),
    ("12_create_employees_table.yaml", &["create_table"]),
    ("13_rename_column.yaml", &["rename_column"]),
    ("14_add_reviews_table.yaml", &["create_table"]),
    ("15_set_column_unique.yaml", &["alter_column"]),
    ("16_set_nullable.yaml", &["alter_column"]),
    ("17_add_rating_column.yaml", &["add_column"]),
    ("18_change_column_type.yaml", &["alter_column"]),
    ("19_create_orders_table.yaml", &["create_table"]),
    ("20_create_posts_table.yaml", &["create_table"]),
    ("21_add_foreign_key_constraint.yaml", &["alter_column"]),
    ("22_add_check_constraint.yaml", &["alter_column"]),
    ("23_drop_check_constraint.yaml", &["drop_constraint"]),
    ("24_drop_foreign_key_constraint.yaml", &["drop_constraint"]),
    ("25_add_table_with_check_constraint.yaml", &["create_table"]),
    ("26_add_column_with_check_constraint.yaml", &["add_column"]),
    ("27_drop_unique_constraint.yaml", &["drop_constraint"]),
    ("28_different_defaults.yaml", &["create_table"]),
    ("29_set_replica_identity.yaml", &["set_replica_identity"]),
    ("30_add_column_simple_up.yaml", &["add_column"]),
    ("31_unset_not_null.yaml", &["alter_column"]),
    ("32_sql_on_complete.yaml", &["sql"]),
    ("33_rename_check_constraint.yaml", &["rename_constraint"]),
    ("34_create_events_table.yaml", &["create_table"]),
    ("35_alter_column_multiple.yaml", &["alter_column"]),
    ("36_set_comment_to_null.yaml", &["alter_column"]),
    ("37_create_partial_index.yaml", &["create_index"]),
    (
        "38_create_hash_index_with_fillfactor.yaml",
        &["create_index"],
    ),
    (
        "39_add_column_with_multiple_pk_in_table.yaml",
        &["add_column"],
    ),
    ("40_create_enum_type.yaml", &["sql"]),
    ("41_add_enum_column.yaml", &["add_column"]),
    ("42_create_unique_index.yaml", &["create_index"]),
    ("43_create_tickets_table.yaml", &["create_table"]),
    (
        "44_add_table_unique_constraint.yaml",
        &["create_constraint"],
    ),
    ("45_add_table_check_constraint.yaml", &["create_constraint"]),
    ("46_alter_column_drop_default.yaml", &["alter_column"]),
    (
        "47_add_table_foreign_key_constraint.yaml",
        &["create_constraint"],
    ),
    (
        "48_drop_tickets_check.yaml",
        &["drop_multicolumn_constraint"],
    ),
    (
        "49_unset_not_null_on_indexed_column.yaml",
        &["alter_column"],
    ),
    (
        "50_create_table_with_table_constraint.yaml",
        &["create_table"],
    ),
    (
        "51_create_table_with_table_foreign_key_constraint.yaml",
        &["create_table"],
    ),
    (
        "52_create_table_with_exclusion_constraint.yaml",
        &["create_table"],
    ),
    ("53_add_column_with_volatile_default.yaml", &["add_column"]),
    ("54_create_index_with_opclass.yaml", &["create_index"]),
    (
        "55_add_primary_key_constraint_to_table.yaml",
        &["create_table", "create_constraint"],
    ),
    ("56_with_version_schema.yaml", &["create_table"]),
];

fn load_example(file: &str) -> Migration {
    let path = examples_dir().join(file);
    format::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn kinds(m: &Migration) -> Vec<&'static str> {
    m.operations.iter().map(Op::kind).collect()
}

/// The operation items of a pgroll example, read from the text without a YAML parser: every
/// `  - key:` line at the indentation pgroll's examples use, with its 1-based line number.
fn op_items_in_text(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let rest = line.strip_prefix("  - ")?;
            let key = rest.strip_suffix(':')?;
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then(|| (i + 1, key.to_owned()))
        })
        .collect()
}

fn parse_yaml(text: &str) -> Result<Migration, FormatError> {
    format::parse("migrations/07_x.yaml", "07_x", text, FileKind::Yaml)
}

fn parse_json(text: &str) -> Result<Migration, FormatError> {
    format::parse("migrations/07_x.json", "07_x", text, FileKind::Json)
}

fn yaml_err(text: &str) -> String {
    match parse_yaml(text) {
        Ok(m) => panic!("parsed: {:?}", m.operations),
        Err(e) => e.to_string(),
    }
}

fn json_err(text: &str) -> String {
    match parse_json(text) {
        Ok(m) => panic!("parsed: {:?}", m.operations),
        Err(e) => e.to_string(),
    }
}

/// A fresh directory under cargo's scratch space for integration tests.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("format-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_table_lists_every_example() {
    let mut files: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.starts_with('.'))
        .collect();
    files.sort();
    let listed: Vec<&str> = EXAMPLES.iter().map(|(f, _)| *f).collect();
    assert_eq!(files, listed);
    assert_eq!(listed.len(), 56);
}

#[test]
fn every_example_parses_with_the_expected_operations() {
    for (file, expected) in EXAMPLES {
        let m = load_example(file);
        assert_eq!(&kinds(&m), expected, "{file}");
        assert_eq!(m.name, file.trim_end_matches(".yaml"), "{file}");
        assert_eq!(m.file, examples_dir().join(file).display().to_string());
        assert_eq!(
            m.raw["operations"].as_array().map(Vec::len),
            Some(expected.len()),
            "{file}"
        );

        // The table agrees with the text, and each operation's line is its `- key:` line.
        let text = std::fs::read_to_string(examples_dir().join(file)).unwrap();
        let items = op_items_in_text(&text);
        let text_kinds: Vec<&str> = items.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(&text_kinds, expected, "{file}");
        let lines: Vec<Option<usize>> = items.iter().map(|(l, _)| Some(*l)).collect();
        assert_eq!(m.op_lines, lines, "{file}");
        assert_eq!(m.op_location(0), format!("{}:{}", m.file, items[0].0));

        // Each operation's planning behaviour reports the same name.
        for op in &m.operations {
            assert_eq!(op.operation().kind(), op.kind());
        }
        let expected_schema =
            (*file == "56_with_version_schema.yaml").then(|| "with_version_schema".to_owned());
        assert_eq!(m.version_schema, expected_schema, "{file}");
    }
}

#[test]
fn load_dir_reads_migrations_in_order() {
    let all = format::load_dir(&examples_dir()).unwrap();
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    let expected: Vec<&str> = EXAMPLES
        .iter()
        .map(|(f, _)| f.trim_end_matches(".yaml"))
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn fields_and_defaults_follow_the_schema() {
    // Columns are NOT NULL unless they say otherwise; a quoted default is SQL.
    let m = load_example("03_add_column.yaml");
    let Op::AddColumn(desc) = &m.operations[0] else {
        panic!("{:?}", m.operations[0])
    };
    assert_eq!(desc.table, "products");
    assert_eq!(desc.up, RawSql::new("UPPER(name)"));
    assert!(desc.column.nullable);
    let Op::AddColumn(stock) = &m.operations[1] else {
        panic!()
    };
    assert!(!stock.column.nullable && !stock.column.pk && !stock.column.unique);
    assert_eq!(stock.column.default, Some(RawSql::new("100")));
    assert_eq!(stock.column.type_, RawSql::new("int"));
    assert!(stock.up.is_empty());

    let m = load_example("08_create_fruits_table.yaml");
    let Op::CreateTable(t) = &m.operations[0] else {
        panic!()
    };
    let identity = t.columns[0]
        .generated
        .as_ref()
        .and_then(|g| g.identity.as_ref())
        .unwrap();
    assert_eq!(
        identity.user_specified_values,
        IdentityUserSpecifiedValues::ByDefault
    );
    assert!(identity.sequence_options.is_empty());

    let m = load_example("21_add_foreign_key_constraint.yaml");
    let Op::AlterColumn(a) = &m.operations[0] else {
        panic!()
    };
    let r = a.references.as_ref().unwrap();
    assert_eq!(
        (r.name.as_str(), r.table.as_str(), r.column.as_str()),
        ("fk_users_id", "users", "id")
    );
    assert_eq!(r.on_delete, ForeignKeyAction::Cascade);
    assert_eq!(r.on_update, ForeignKeyAction::NoAction);
    assert_eq!(r.match_type, ForeignKeyMatchType::Simple);
    assert_eq!(a.type_, None);
    assert_eq!(a.default, Nullable::Absent);

    // `null` drops a default or a comment; absence leaves it alone.
    let m = load_example("36_set_comment_to_null.yaml");
    let Op::AlterColumn(a) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(
        (&a.comment, &a.default),
        (&Nullable::Null, &Nullable::Absent)
    );
    let m = load_example("46_alter_column_drop_default.yaml");
    let Op::AlterColumn(a) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(
        (&a.comment, &a.default),
        (&Nullable::Absent, &Nullable::Null)
    );

    let m = load_example("35_alter_column_multiple.yaml");
    let Op::AlterColumn(a) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(a.type_, Some(RawSql::new("text")));
    assert_eq!(a.default, Nullable::Value(RawSql::new("'unknown event'")));
    assert_eq!(
        a.comment,
        Nullable::Value("the full name of the event".to_owned())
    );
    assert_eq!(a.nullable, Some(false));
    assert_eq!(
        a.unique.as_ref().map(|u| u.name.as_str()),
        Some("events_event_name_unique")
    );
    assert_eq!(
        a.check.as_ref().map(|c| c.constraint.as_str()),
        Some("length(name) > 3")
    );
    assert_eq!(a.down, RawSql::new("event_name"));

    let m = load_example("29_set_replica_identity.yaml");
    let Op::SetReplicaIdentity(s) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(s.identity.type_, ReplicaIdentityType::Index);
    assert_eq!(s.identity.index.as_deref(), Some("fruits_pkey"));

    let m = load_example("32_sql_on_complete.yaml");
    let Op::RawSql(s) = &m.operations[0] else {
        panic!()
    };
    assert!(s.on_complete && s.down.is_empty());

    let m = load_example("38_create_hash_index_with_fillfactor.yaml");
    let Op::CreateIndex(i) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(i.method, IndexMethod::Hash);
    assert_eq!(i.storage_parameters, RawSql::new("fillfactor = 70"));
    assert!(!i.unique && i.predicate.is_empty());
    let m = load_example("10_create_index.yaml");
    let Op::CreateIndex(i) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(i.method, IndexMethod::Btree);
    assert_eq!(i.columns[0].column, "name");
    assert_eq!(
        (
            i.columns[0].sort,
            i.columns[0].nulls,
            i.columns[0].collate.as_str()
        ),
        (None, None, "")
    );
    let m = load_example("54_create_index_with_opclass.yaml");
    let Op::CreateIndex(i) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(
        i.columns[0].opclass.as_ref().map(|o| o.name.as_str()),
        Some("int8_ops")
    );

    let m = load_example("45_add_table_check_constraint.yaml");
    let Op::CreateConstraint(c) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(c.type_, CreateConstraintType::Check);
    assert_eq!(
        c.check,
        Some(RawSql::new("sellers_name = 'alice' OR sellers_zip > 0"))
    );
    assert_eq!(
        c.up.keys().collect::<Vec<_>>(),
        ["sellers_name", "sellers_zip"]
    );
    assert_eq!(c.down["sellers_zip"], RawSql::new("sellers_zip"));

    let m = load_example("48_drop_tickets_check.yaml");
    let Op::DropMultiColumnConstraint(d) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(
        (d.table.as_str(), d.name.as_str(), d.up.len(), d.down.len()),
        ("tickets", "check_zip_name", 2, 2)
    );

    let m = load_example("51_create_table_with_table_foreign_key_constraint.yaml");
    let Op::CreateTable(t) = &m.operations[0] else {
        panic!()
    };
    let types: Vec<ConstraintType> = t.constraints.iter().map(|c| c.type_).collect();
    assert_eq!(
        types,
        [
            ConstraintType::PrimaryKey,
            ConstraintType::ForeignKey,
            ConstraintType::Unique,
            ConstraintType::Check
        ]
    );
    let fk = t.constraints[1].references.as_ref().unwrap();
    assert_eq!(
        (fk.on_delete, fk.on_update),
        (ForeignKeyAction::Cascade, ForeignKeyAction::Cascade)
    );
    assert_eq!(fk.columns, ["id"]);
    let include = &t.constraints[2]
        .index_parameters
        .as_ref()
        .unwrap()
        .include_columns;
    assert_eq!(include, &["name"]);

    let m = load_example("52_create_table_with_exclusion_constraint.yaml");
    let Op::CreateTable(t) = &m.operations[0] else {
        panic!()
    };
    let ex = t.constraints[1].exclude.as_ref().unwrap();
    assert_eq!(ex.index_method, "btree");
    assert_eq!(ex.elements, RawSql::new("title WITH ="));
    assert_eq!(ex.predicate, RawSql::new("title IS NOT NULL"));

    let m = load_example("12_create_employees_table.yaml");
    let Op::CreateTable(t) = &m.operations[0] else {
        panic!()
    };
    assert_eq!(
        t.comment.as_deref(),
        Some("This is a comment for the employees table")
    );
    assert_eq!(
        t.columns[1].comment.as_deref(),
        Some("This is a comment for the role column")
    );
}

#[test]
fn keyword_values_accept_any_case_like_pgroll() {
    let m = parse_yaml(
        "operations:\n  - alter_column:\n      table: posts\n      column: user_id\n      references:\n        name: fk\n        table: users\n        column: id\n        on_delete: set null\n        match_type: full\n      up: user_id\n      down: user_id\n",
    )
    .unwrap();
    let Op::AlterColumn(a) = &m.operations[0] else {
        panic!()
    };
    let r = a.references.as_ref().unwrap();
    assert_eq!(
        (r.on_delete, r.match_type),
        (ForeignKeyAction::SetNull, ForeignKeyMatchType::Full)
    );
}

#[test]
fn unknown_operation() {
    assert_eq!(
        yaml_err("operations:\n  - create_table:\n      name: a\n      columns: []\n  - add_colum:\n      table: t\n"),
        "migrations/07_x.yaml:5:5: operations[1].add_colum: unknown operation; expected one of: \
         add_column, alter_column, create_constraint, create_index, create_table, drop_column, \
         drop_constraint, drop_index, drop_multicolumn_constraint, drop_table, sql, rename_column, \
         rename_constraint, rename_table, set_replica_identity"
    );
}

#[test]
fn unknown_field_names_its_line() {
    let text = "operations:\n  - drop_table:\n      name: x\n  - add_column:\n      table: t\n      column:\n        name: c\n        type: int\n        nullabel: true\n";
    let err = parse_yaml(text).unwrap_err();
    assert_eq!(err.line(), Some(9));
    assert_eq!(
        err.to_string(),
        "migrations/07_x.yaml:9:9: operations[1].add_column.column.nullabel: unknown field; expected one \
         of: name, type, nullable, pk, unique, default, comment, check, references, generated"
    );
    let FormatError::Invalid { path, problem, .. } = err else {
        panic!()
    };
    assert_eq!(path.to_string(), "operations[1].add_column.column.nullabel");
    assert!(matches!(*problem, Problem::UnknownField { .. }));

    assert_eq!(
        yaml_err("operations: []\nversion: 2\n"),
        "migrations/07_x.yaml:2:1: version: unknown field; expected one of: name, version_schema, operations"
    );
}

#[test]
fn malformed_yaml_names_its_line() {
    assert_eq!(
        yaml_err("operations:\n  - add_column:\n      table: t\n     column: x\n"),
        "migrations/07_x.yaml:4:6: invalid YAML: while parsing a block mapping, did not find expected key"
    );
    assert_eq!(
        yaml_err("operations:\n  - sql:\n      up: 'select 1\n"),
        "migrations/07_x.yaml:3:11: invalid YAML: unclosed quote"
    );
    assert_eq!(
        yaml_err("operations:\n  - drop_table:\n      name: a\n      name: b\n"),
        "migrations/07_x.yaml:4:7: invalid YAML: duplicate mapping key `name` is not allowed here"
    );
}

#[test]
fn malformed_json_names_its_line() {
    assert_eq!(
        json_err("{\n  \"operations\": [\n    {\"drop_table\": {\"name\": \"x\"}},\n  ]\n}\n"),
        "migrations/07_x.json:4:3: invalid JSON: trailing comma"
    );
    assert_eq!(
        json_err("{\n  \"operations\": [\n    {\"drop_table\": {\"name\": \"x\"}}\n  ]\n"),
        "migrations/07_x.json:5:1: invalid JSON: EOF while parsing an object"
    );
    // Errors after parsing are located in JSON too.
    assert_eq!(
        json_err("{\n  \"operations\": [\n    {\"drop_table\": {\"nam\": \"x\"}}\n  ]\n}\n"),
        "migrations/07_x.json:3:21: operations[0].drop_table.nam: unknown field; expected one of: name"
    );
}

#[test]
fn missing_required_field() {
    assert_eq!(
        yaml_err(
            "operations:\n  - add_column:\n      table: t\n      column:\n        type: int\n"
        ),
        "migrations/07_x.yaml:5:9: operations[0].add_column.column.name: missing required field"
    );
    assert_eq!(
        yaml_err("version_schema: v\n"),
        "migrations/07_x.yaml:1:1: operations: missing required field"
    );
}

#[test]
fn identifiers_over_63_bytes_are_rejected() {
    let name64 = "a".repeat(64);
    assert_eq!(
        yaml_err(&format!(
            "operations:\n  - create_table:\n      name: t\n      columns:\n        - name: id\n          type: int\n        - name: {name64}\n          type: int\n"
        )),
        format!(
            "migrations/07_x.yaml:7:17: operations[0].create_table.columns[1].name: name \"{name64}\" \
             is 64 bytes long; PostgreSQL's limit is 63"
        )
    );
    // 63 bytes is fine, and the limit is in bytes, not characters.
    let name63 = "b".repeat(63);
    parse_yaml(&format!(
        "operations:\n  - drop_table:\n      name: {name63}\n"
    ))
    .unwrap();
    let wide = "é".repeat(32);
    assert_eq!(
        yaml_err(&format!(
            "operations:\n  - drop_index:\n      name: {wide}\n"
        )),
        format!(
            "migrations/07_x.yaml:3:13: operations[0].drop_index.name: name \"{wide}\" is 64 bytes \
             long; PostgreSQL's limit is 63"
        )
    );
    // Column names that are keys of an `up`/`down` map are located at the key.
    assert_eq!(
        yaml_err(&format!(
            "operations:\n  - drop_multicolumn_constraint:\n      table: t\n      name: c\n      down:\n        {name64}: x\n"
        )),
        format!(
            "migrations/07_x.yaml:6:9: operations[0].drop_multicolumn_constraint.down.{name64}: name \
             \"{name64}\" is 64 bytes long; PostgreSQL's limit is 63"
        )
    );
    assert_eq!(
        yaml_err(&format!("version_schema: {name64}\noperations: []\n")),
        format!("migrations/07_x.yaml:1:17: version_schema: name \"{name64}\" is 64 bytes long; PostgreSQL's limit is 63")
    );
}

#[test]
fn empty_names_are_rejected() {
    assert_eq!(
        yaml_err("operations:\n  - rename_column:\n      table: t\n      from: a\n      to: ''\n"),
        "migrations/07_x.yaml:5:11: operations[0].rename_column.to: name is empty"
    );
    assert_eq!(
        yaml_err("operations:\n  - create_index:\n      name: i\n      table: t\n      columns:\n        - column: a\n        - column: \"\"\n"),
        "migrations/07_x.yaml:7:19: operations[0].create_index.columns[1].column: name is empty"
    );
}

#[test]
fn wrong_types_say_what_was_found() {
    assert_eq!(
        yaml_err("operations:\n  - add_column:\n      table: t\n      column:\n        name: c\n        type: int\n        default: 100\n"),
        "migrations/07_x.yaml:7:18: operations[0].add_column.column.default: expected a string, found \
         the number 100 (quote it to make it a string)"
    );
    // YAML 1.2: `yes` is a string, not a boolean.
    assert_eq!(
        yaml_err("operations:\n  - sql:\n      up: select 1\n      onComplete: yes\n"),
        "migrations/07_x.yaml:4:19: operations[0].sql.onComplete: expected a boolean, found the string \"yes\""
    );
    assert_eq!(
        yaml_err("operations:\n  - drop_table: {name: t}\n    drop_index: {name: i}\n"),
        "migrations/07_x.yaml:2:5: operations[0]: expected an operation (a mapping with one key, the \
         operation's name), found a mapping with 2 keys (drop_table, drop_index)"
    );
    assert_eq!(
        yaml_err("operations:\n  - create_table:\n      name: t\n      columns:\n        - name: a\n          type: int\n          references: {name: fk, table: u, column: id, on_delete: CASCAD}\n"),
        "migrations/07_x.yaml:7:67: operations[0].create_table.columns[0].references.on_delete: unknown \
         value \"CASCAD\"; expected one of: NO ACTION, RESTRICT, CASCADE, SET NULL, SET DEFAULT"
    );
    assert_eq!(
        yaml_err(""),
        "migrations/07_x.yaml:1:1: expected a mapping, found null"
    );
}

#[test]
fn name_in_the_file_must_match_the_file_name() {
    let m = parse_yaml("name: 07_x\noperations: []\n").unwrap();
    assert_eq!(m.name, "07_x");
    assert!(m.operations.is_empty() && m.op_lines.is_empty());
    assert_eq!(
        yaml_err("name: other\noperations: []\n"),
        "migrations/07_x.yaml:1:7: name: \"other\" differs from the file name \"07_x\", which is the migration's name"
    );
}

#[test]
fn yaml_and_json_of_one_migration_are_equal() {
    let yaml = "\
version_schema: v7
operations:
  - create_table:
      name: tickets
      columns:
        - name: id
          type: serial
          pk: true
        - name: zip
          type: integer
          nullable: true
          default: \"0\"
  - create_constraint:
      type: check
      table: tickets
      name: zip_positive
      columns: [zip]
      check: zip > 0
      up:
        zip: SELECT CASE WHEN zip <= 0 THEN 1 ELSE zip END
      down:
        zip: zip
  - alter_column:
      table: tickets
      column: zip
      comment: null
      up: zip
      down: zip
  - sql:
      up: SELECT 1
      onComplete: true
";
    let json = r#"{
  "version_schema": "v7",
  "operations": [
    {
      "create_table": {
        "name": "tickets",
        "columns": [
          {"name": "id", "type": "serial", "pk": true},
          {"name": "zip", "type": "integer", "nullable": true, "default": "0"}
        ]
      }
    },
    {
      "create_constraint": {
        "type": "check",
        "table": "tickets",
        "name": "zip_positive",
        "columns": ["zip"],
        "check": "zip > 0",
        "up": {"zip": "SELECT CASE WHEN zip <= 0 THEN 1 ELSE zip END"},
        "down": {"zip": "zip"}
      }
    },
    {"alter_column": {"table": "tickets", "column": "zip", "comment": null, "up": "zip", "down": "zip"}},
    {"sql": {"up": "SELECT 1", "onComplete": true}}
  ]
}
"#;
    let y = parse_yaml(yaml).unwrap();
    let j = parse_json(json).unwrap();
    assert_eq!(y.operations, j.operations);
    assert_eq!(y.raw, j.raw);
    assert_eq!(y.version_schema.as_deref(), Some("v7"));
    assert_eq!(y.version_schema, j.version_schema);
    assert_eq!(y.name, j.name);
    assert_eq!(y.op_lines, [Some(3), Some(13), Some(23), Some(29)]);
    // In JSON an operation starts at its `{`.
    assert_eq!(j.op_lines, [Some(4), Some(13), Some(24), Some(25)]);

    // Every example, written out as JSON, reads back the same.
    for (file, _) in EXAMPLES {
        let y = load_example(file);
        let text = serde_json::to_string_pretty(&y.raw).unwrap();
        let j = format::parse("x.json", &y.name, &text, FileKind::Json)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(y.operations, j.operations, "{file}");
        assert_eq!(y.raw, j.raw, "{file}");
        assert_eq!(y.version_schema, j.version_schema, "{file}");
        assert!(
            j.op_lines.iter().all(Option::is_some),
            "{file}: {:?}",
            j.op_lines
        );
    }
}

#[test]
fn load_and_load_dir_pick_files_by_extension() {
    let dir = scratch_dir("load-dir");
    std::fs::write(dir.join("README.md"), "# not a migration\n").unwrap();
    std::fs::write(dir.join(".hidden.yaml"), "not: [valid\n").unwrap();
    std::fs::create_dir(dir.join("sub.yaml")).unwrap();
    std::fs::write(
        dir.join("02_b.json"),
        r#"{"operations": [{"drop_table": {"name": "t"}}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("01_a.yml"),
        "operations:\n  - drop_index:\n      name: i\n",
    )
    .unwrap();
    std::fs::write(dir.join("03_c.YAML"), "operations: []\n").unwrap();
    let all = format::load_dir(&dir).unwrap();
    let names: Vec<(&str, Vec<&str>)> = all.iter().map(|m| (m.name.as_str(), kinds(m))).collect();
    assert_eq!(
        names,
        [
            ("01_a", vec!["drop_index"]),
            ("02_b", vec!["drop_table"]),
            ("03_c", vec![])
        ]
    );

    let readme = dir.join("README.md");
    assert_eq!(
        format::load(&readme).unwrap_err().to_string(),
        format!(
            "{}: not a migration file: expected a .yaml, .yml or .json extension",
            readme.display()
        )
    );
    let missing = dir.join("99_missing.yaml");
    let err = format::load(&missing).unwrap_err();
    assert!(matches!(err, FormatError::Io { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", missing.display())),
        "{err}"
    );

    // Two files for one migration name are an error.
    std::fs::write(dir.join("02_b.yaml"), "operations: []\n").unwrap();
    let err = format::load_dir(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: {} and {} are both migration \"02_b\"",
            dir.display(),
            dir.join("02_b.json").display(),
            dir.join("02_b.yaml").display()
        )
    );

    // A broken file stops the load with its own message.
    std::fs::remove_file(dir.join("02_b.yaml")).unwrap();
    std::fs::write(
        dir.join("04_d.yaml"),
        "operations:\n  - drop_tabel:\n      name: t\n",
    )
    .unwrap();
    let err = format::load_dir(&dir).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}:2:5: operations[0].drop_tabel: unknown operation;",
            dir.join("04_d.yaml").display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
