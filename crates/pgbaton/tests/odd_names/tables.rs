//! Cases of the operations on whole tables, and raw SQL. (See `op_odd_names.rs`.)

use crate::common::lifecycle::*;
use crate::OddCase;

pub(crate) fn create_table() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Owners "O"
      columns:
        - {name: Id Col, type: int, pk: true}
"#,
    );
    let migration = yaml(
        "02_odd",
        r#"operations:
  - create_table:
      name: My "Pets"
      comment: it's "odd"
      columns:
        - {name: Pet ID, type: serial, pk: true}
        - {name: Owner "Ref", type: int, nullable: true, references: {name: Fk "Owner", table: Owners "O", column: Id Col}}
        - {name: Name, type: text, unique: true, comment: "O'Brien \"quoted\"", check: {name: Chk "Name", constraint: length("Name") > 1}}
      constraints:
        - {name: Uq "Both", type: unique, columns: [Name, Owner "Ref"]}
"#,
    );
    let after_start = vec![
        Check::Rows(
            V::Base,
            "SELECT schemaname FROM pg_views WHERE viewname = 'My \"Pets\"'",
            &["App \"S\"_02_odd"],
        ),
        Check::Ok(V::Old, r#"INSERT INTO "Owners ""O""" VALUES (1)"#),
        Check::Ok(
            V::New,
            r#"INSERT INTO "My ""Pets""" ("Owner ""Ref""", "Name") VALUES (1, 'Rex')"#,
        ),
        Check::Rows(
            V::New,
            r#"SELECT "Pet ID", "Owner ""Ref""", "Name" FROM "My ""Pets""""#,
            &["1|1|Rex"],
        ),
        Check::Fails(
            V::New,
            r#"INSERT INTO "My ""Pets""" ("Owner ""Ref""", "Name") VALUES (2, 'Max')"#,
            SqlState::FOREIGN_KEY_VIOLATION,
        ),
        Check::Fails(
            V::New,
            r#"INSERT INTO "My ""Pets""" ("Name") VALUES ('R')"#,
            SqlState::CHECK_VIOLATION,
        ),
        Check::Rows(
            V::Base,
            r#"SELECT obj_description('"App ""S"""."My ""Pets"""'::regclass, 'pg_class'),
                      col_description('"App ""S"""."My ""Pets"""'::regclass, 3)"#,
            &["it's \"odd\"|O'Brien \"quoted\""],
        ),
        Check::Rows(
            V::Base,
            r#"SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relname LIKE 'My%' AND c.relkind = 'r'"#,
            &["App \"S\"|My \"Pets\""],
        ),
        Check::Ok(
            V::Base,
            r#"TRUNCATE "My ""Pets""" RESTART IDENTITY; DELETE FROM "Owners ""O""""#,
        ),
    ];
    OddCase {
        schema: "App \"S\"",
        case: Case {
            setup: vec![setup],
            seed: "",
            migration,
            after_start,
            after_rollback: vec![Check::Fails(
                V::Base,
                r#"SELECT * FROM "My ""Pets""""#,
                SqlState::UNDEFINED_TABLE,
            )],
            after_complete: vec![
                Check::Ok(V::Old, r#"INSERT INTO "Owners ""O""" VALUES (7)"#),
                Check::Ok(
                    V::New,
                    r#"INSERT INTO "My ""Pets""" ("Owner ""Ref""", "Name") VALUES (7, 'Rex')"#,
                ),
                Check::Rows(V::Old, r#"SELECT "Pet ID" FROM "My ""Pets""""#, &["1"]),
            ],
        },
    }
}

pub(crate) fn drop_table() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Big "Table"
      columns:
        - {name: Id Col, type: int, pk: true}
  - create_table:
      name: keep me
      columns:
        - {name: id, type: int, pk: true}
"#,
    );
    let migration = yaml(
        "02_drop",
        "operations:\n  - drop_table: {name: Big \"Table\"}\n",
    );
    let old_works = vec![
        Check::Ok(V::Old, r#"INSERT INTO "Big ""Table""" VALUES (1)"#),
        Check::Rows(V::Old, r#"SELECT "Id Col" FROM "Big ""Table""""#, &["1"]),
        Check::Ok(V::Old, r#"DELETE FROM "Big ""Table""""#),
    ];
    let mut after_start = old_works.clone();
    after_start.push(Check::Rows(
        V::Base,
        "SELECT schemaname, viewname FROM pg_views WHERE schemaname LIKE 'Other%' ORDER BY 1, 2",
        &[
            "Other \"Sch\"_01_setup|Big \"Table\"",
            "Other \"Sch\"_01_setup|keep me",
            "Other \"Sch\"_02_drop|keep me",
        ],
    ));
    OddCase {
        schema: "Other \"Sch\"",
        case: Case {
            setup: vec![setup],
            seed: "",
            migration,
            after_start,
            after_rollback: old_works,
            after_complete: vec![
                Check::Fails(
                    V::Base,
                    r#"SELECT * FROM "Big ""Table""""#,
                    SqlState::UNDEFINED_TABLE,
                ),
                Check::Ok(V::New, r#"INSERT INTO "keep me" VALUES (1)"#),
            ],
        },
    }
}

pub(crate) fn rename_table() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Old "Name"
      columns:
        - {name: Id Col, type: int, pk: true}
"#,
    );
    let migration = yaml(
        "02_ren",
        "operations:\n  - rename_table: {from: Old \"Name\", to: New 'Name' \"X\"}\n",
    );
    let after_start = vec![
        Check::Ok(V::Old, r#"INSERT INTO "Old ""Name""" VALUES (1)"#),
        Check::Rows(V::New, r#"SELECT "Id Col" FROM "New 'Name' ""X""""#, &["1"]),
        Check::Ok(V::New, r#"DELETE FROM "New 'Name' ""X""""#),
    ];
    OddCase {
        schema: "Sch \"Q\"",
        case: Case {
            setup: vec![setup],
            seed: "",
            migration,
            after_start,
            after_rollback: vec![Check::Ok(V::Old, r#"SELECT * FROM "Old ""Name""""#)],
            after_complete: vec![
                Check::Rows(
                    V::Base,
                    r#"SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'Sch "Q"'"#,
                    &["Sch \"Q\"|New 'Name' \"X\""],
                ),
                Check::Ok(V::New, r#"INSERT INTO "New 'Name' ""X""" VALUES (2)"#),
            ],
        },
    }
}

pub(crate) fn raw_sql() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Own "T"
      columns:
        - {name: Id Col, type: int, pk: true}
"#,
    );
    // The SQL runs with the migrator's search path; it names the schema itself.
    let migration = yaml(
        "02_odd",
        r#"operations:
  - sql:
      up: CREATE TABLE "Sq ""L"""."Raw 'T'" ("Id Col" int PRIMARY KEY, "Na""me" text)
      down: DROP TABLE "Sq ""L"""."Raw 'T'"
"#,
    );
    let present = vec![
        Check::Ok(V::Base, r#"INSERT INTO "Raw 'T'" VALUES (1, 'it''s')"#),
        Check::Rows(
            V::Base,
            r#"SELECT "Id Col", "Na""me" FROM "Raw 'T'""#,
            &["1|it's"],
        ),
        Check::Ok(V::Base, r#"DELETE FROM "Raw 'T'""#),
        Check::Ok(
            V::Old,
            r#"INSERT INTO "Own ""T""" VALUES (1); DELETE FROM "Own ""T""""#,
        ),
        Check::Ok(
            V::New,
            r#"INSERT INTO "Own ""T""" VALUES (1); DELETE FROM "Own ""T""""#,
        ),
    ];
    OddCase {
        schema: "Sq \"L\"",
        case: Case {
            setup: vec![setup],
            seed: "",
            migration,
            after_start: present.clone(),
            after_rollback: vec![
                Check::Fails(
                    V::Base,
                    r#"SELECT * FROM "Raw 'T'""#,
                    SqlState::UNDEFINED_TABLE,
                ),
                Check::Ok(
                    V::Old,
                    r#"INSERT INTO "Own ""T""" VALUES (1); DELETE FROM "Own ""T""""#,
                ),
            ],
            after_complete: present,
        },
    }
}
