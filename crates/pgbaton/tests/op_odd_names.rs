//! Every operation with odd identifiers — capitals, spaces, single and double quotes in the schema,
//! table, column, constraint and index names — in a non-public schema, through the whole
//! lifecycle and both versions' views. One table, one case per operation kind ([`Op::KINDS`]):
//! a new operation fails this test until it has its case here. Nothing may land in `public`.

mod common;

use std::collections::BTreeSet;

use common::lifecycle::*;
use pgbaton::ops::Op;

/// One operation's case: the schema it runs in (created by [`Env::with_schema`], the migrator's
/// schema) and the lifecycle run there.
struct OddCase {
    schema: &'static str,
    case: Case,
}

/// Builds one operation's case.
type MakeCase = fn() -> OddCase;

/// The cases, keyed by the operation kind each one's migration consists of.
const CASES: &[(&str, MakeCase)] = &[
    ("add_column", add_column),
    ("alter_column", alter_column),
    ("create_constraint", create_constraint),
    ("create_index", create_index),
    ("create_table", create_table),
    ("drop_column", drop_column),
    ("drop_constraint", drop_constraint),
    ("drop_index", drop_index),
    ("drop_multicolumn_constraint", drop_multicolumn_constraint),
    ("drop_table", drop_table),
    ("sql", raw_sql),
    ("rename_column", rename_column),
    ("rename_constraint", rename_constraint),
    ("rename_table", rename_table),
    ("set_replica_identity", set_replica_identity),
];

#[tokio::test]
async fn every_operation_with_odd_names_in_another_schema() {
    let covered: BTreeSet<&str> = CASES.iter().map(|(kind, _)| *kind).collect();
    let kinds: BTreeSet<&str> = Op::KINDS.iter().copied().collect();
    assert_eq!(covered, kinds, "one odd-names case per operation kind");
    assert_eq!(CASES.len(), kinds.len(), "one case per kind, no repeats");

    // Each case has a database of its own: run them side by side, then report every failure.
    let mut tasks = Vec::new();
    for &(kind, make) in CASES {
        let OddCase { schema, case } = make();
        assert!(
            !case.migration.operations.is_empty()
                && case.migration.operations.iter().all(|op| op.kind() == kind),
            "the {kind} case must migrate with {kind} operations only"
        );
        let task = tokio::spawn(async move {
            let env = Env::with_schema(schema).await;
            run_in(&env, case).await;
            let public = common::scalar_i64(
                &env.db.client,
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public'",
            )
            .await;
            assert_eq!(public, 0, "nothing is created in public");
        });
        tasks.push((kind, task));
    }
    let mut failed = Vec::new();
    for (kind, task) in tasks {
        if let Err(e) = task.await {
            let why = match e.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".to_string()),
                Err(e) => e.to_string(),
            };
            failed.push(format!("{kind}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} operations failed with odd names:\n{}",
        failed.len(),
        CASES.len(),
        failed.join("\n")
    );
}

fn add_column() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Weird "T"
      columns:
        - {name: Key Col, type: int, pk: true}
        - {name: Name, type: text, nullable: true}
"#,
    );
    let migration = yaml(
        "02_odd",
        r#"operations:
  - add_column:
      table: Weird "T"
      up: '"Key Col" * 2'
      column:
        name: Mixed "Case"
        type: bigint
        unique: true
        comment: it's "odd"
        check: {name: Chk "Odd", constraint: '"Mixed ""Case""" > 0'}
"#,
    );
    let after_start = vec![
        Check::Ok(
            V::Base,
            r#"DELETE FROM "Weird ""T""" WHERE "Key Col" >= 10"#,
        ),
        Check::Rows(
            V::New,
            r#"SELECT "Key Col", "Mixed ""Case""" FROM "Weird ""T""" ORDER BY 1"#,
            &["1|2", "2|4"],
        ),
        Check::Ok(
            V::Old,
            r#"INSERT INTO "Weird ""T""" ("Key Col", "Name") VALUES (10, 'x')"#,
        ),
        Check::Rows(
            V::New,
            r#"SELECT "Mixed ""Case""" FROM "Weird ""T""" WHERE "Key Col" = 10"#,
            &["20"],
        ),
        Check::Fails(
            V::New,
            r#"INSERT INTO "Weird ""T""" ("Key Col", "Mixed ""Case""") VALUES (11, 2)"#,
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Fails(
            V::New,
            r#"INSERT INTO "Weird ""T""" ("Key Col", "Mixed ""Case""") VALUES (11, -1)"#,
            SqlState::CHECK_VIOLATION,
        ),
        Check::Rows(
            V::Base,
            r#"SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relname = '_pgbaton_uniq_Weird "T"_Mixed "Case"'"#,
            &["App \"S\""],
        ),
    ];
    OddCase {
        schema: "App \"S\"",
        case: Case {
            setup: vec![setup],
            seed: r#"INSERT INTO "App ""S"""."Weird ""T""" VALUES (1, 'a'), (2, 'b')"#,
            migration,
            after_start,
            after_rollback: vec![Check::Rows(
                V::Base,
                r#"SELECT count(*) FROM pg_attribute WHERE attrelid = '"App ""S"""."Weird ""T"""'::regclass AND attnum > 0 AND NOT attisdropped"#,
                &["2"],
            )],
            after_complete: vec![
                Check::Rows(
                    V::Base,
                    r#"SELECT attname, attnotnull, col_description(attrelid, attnum) FROM pg_attribute
                        WHERE attrelid = '"App ""S"""."Weird ""T"""'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"#,
                    &[
                        "Key Col|t|NULL",
                        "Name|f|NULL",
                        "Mixed \"Case\"|t|it's \"odd\"",
                    ],
                ),
                Check::Rows(
                    V::Base,
                    r#"SELECT conname FROM pg_constraint WHERE conrelid = '"App ""S"""."Weird ""T"""'::regclass AND contype <> 'n' ORDER BY 1"#,
                    &[
                        "Chk \"Odd\"",
                        "Weird \"T\"_Mixed \"Case\"_key",
                        "Weird \"T\"_pkey",
                    ],
                ),
            ],
        },
    }
}

fn alter_column() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Acc "T"
      columns:
        - {name: Id Col, type: int, pk: true}
        - {name: E "Mail", type: varchar(100), nullable: true, unique: true}
"#,
    );
    let migration = yaml(
        "02_odd",
        r#"operations:
  - alter_column:
      table: Acc "T"
      column: E "Mail"
      type: varchar(200)
      nullable: false
      comment: it's "wide"
      up: coalesce("E ""Mail""", 'none-' || "Id Col")
      down: '"E ""Mail"""'
"#,
    );
    let q = r#"SELECT "Id Col", "E ""Mail""" FROM "Acc ""T""" ORDER BY 1"#;
    let columns = r#"SELECT attname, format_type(atttypid, atttypmod), attnotnull, col_description(attrelid, attnum)
        FROM pg_attribute WHERE attrelid = '"Alt ""S"""."Acc ""T"""'::regclass AND attnum > 0 AND NOT attisdropped
        ORDER BY attnum"#;
    OddCase {
        schema: "Alt \"S\"",
        case: Case {
            setup: vec![setup],
            seed: r#"INSERT INTO "Alt ""S"""."Acc ""T""" VALUES (1, 'a@x'), (2, NULL)"#,
            migration,
            after_start: vec![
                Check::Rows(V::New, q, &["1|a@x", "2|none-2"]),
                Check::Rows(V::Old, q, &["1|a@x", "2|NULL"]),
                // Until complete, NOT NULL on the copy is a NOT VALID check constraint.
                Check::Fails(
                    V::New,
                    r#"INSERT INTO "Acc ""T""" VALUES (3, NULL)"#,
                    SqlState::CHECK_VIOLATION,
                ),
                Check::Fails(
                    V::New,
                    r#"INSERT INTO "Acc ""T""" VALUES (3, 'a@x')"#,
                    SqlState::UNIQUE_VIOLATION,
                ),
                Check::Ok(V::Old, r#"INSERT INTO "Acc ""T""" VALUES (3, NULL)"#),
                Check::Rows(
                    V::New,
                    r#"SELECT "E ""Mail""" FROM "Acc ""T""" WHERE "Id Col" = 3"#,
                    &["none-3"],
                ),
                Check::Ok(
                    V::New,
                    r#"UPDATE "Acc ""T""" SET "E ""Mail""" = 'c@x' WHERE "Id Col" = 3"#,
                ),
                Check::Rows(
                    V::Old,
                    r#"SELECT "E ""Mail""" FROM "Acc ""T""" WHERE "Id Col" = 3"#,
                    &["c@x"],
                ),
                Check::Ok(V::Old, r#"DELETE FROM "Acc ""T""" WHERE "Id Col" = 3"#),
            ],
            after_rollback: vec![
                Check::Rows(V::Old, q, &["1|a@x", "2|NULL"]),
                Check::Rows(
                    V::Base,
                    columns,
                    &[
                        "Id Col|integer|t|NULL",
                        "E \"Mail\"|character varying(100)|f|NULL",
                    ],
                ),
            ],
            after_complete: vec![
                Check::Rows(
                    V::Base,
                    columns,
                    &[
                        "Id Col|integer|t|NULL",
                        "E \"Mail\"|character varying(200)|t|it's \"wide\"",
                    ],
                ),
                Check::Rows(V::New, q, &["1|a@x", "2|none-2"]),
                Check::Fails(
                    V::New,
                    r#"INSERT INTO "Acc ""T""" VALUES (3, 'a@x')"#,
                    SqlState::UNIQUE_VIOLATION,
                ),
                Check::Fails(
                    V::New,
                    r#"INSERT INTO "Acc ""T""" VALUES (3, NULL)"#,
                    SqlState::NOT_NULL_VIOLATION,
                ),
            ],
        },
    }
}

fn create_constraint() -> OddCase {
    let migration = yaml(
        "02_odd",
        r#"operations:
  - create_constraint:
      type: check
      table: Tick ets
      name: 'Zip "Positive"'
      columns: ['Zi"p']
      check: '"Zi""p" > 0 AND name <> ''Zi"p'''
      up:
        'Zi"p': 'SELECT CASE WHEN "Zi""p" > 0 THEN "Zi""p" ELSE 1 END'
      down:
        'Zi"p': '"Zi""p"'
"#,
    );
    let q = "SELECT \"Zi\"\"p\" FROM \"Tick ets\" ORDER BY id";
    OddCase {
        schema: "My App",
        case: Case {
            setup: vec![],
            seed: "CREATE TABLE \"My App\".\"Tick ets\" (id serial PRIMARY KEY, \"Zi\"\"p\" int, \"name\" text);
                   INSERT INTO \"My App\".\"Tick ets\" (\"Zi\"\"p\", name) VALUES (5, 'a'), (-1, 'b');",
            migration,
            after_start: vec![
                Check::Rows(V::New, q, &["5", "1"]),
                Check::Rows(V::Old, q, &["5", "-1"]),
                Check::Fails(
                    V::New,
                    "INSERT INTO \"Tick ets\" (\"Zi\"\"p\", name) VALUES (0, 'c')",
                    SqlState::CHECK_VIOLATION,
                ),
                Check::Ok(V::Old, "INSERT INTO \"Tick ets\" (\"Zi\"\"p\", name) VALUES (0, 'c')"),
                Check::Rows(V::New, "SELECT \"Zi\"\"p\" FROM \"Tick ets\" WHERE name = 'c'", &["1"]),
                Check::Ok(V::Old, "DELETE FROM \"Tick ets\" WHERE name = 'c'"),
            ],
            after_rollback: vec![Check::Rows(V::Old, q, &["5", "-1"])],
            after_complete: vec![
                Check::Rows(V::New, q, &["5", "1"]),
                Check::Rows(
                    V::Base,
                    "SELECT conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c' AND connamespace = '\"My App\"'::regnamespace",
                    &["Zip \"Positive\": CHECK (((\"Zi\"\"p\" > 0) AND (name <> 'Zi\"p'::text)))"],
                ),
            ],
        },
    }
}

fn create_index() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Fru "T"
      columns:
        - {name: Id Col, type: int, pk: true}
        - {name: Na"me, type: text, nullable: true}
"#,
    );
    let migration = yaml(
        "02_odd",
        r#"operations:
  - create_index:
      name: Idx "Odd" 'Name'
      table: Fru "T"
      columns: [Na"me]
      unique: true
"#,
    );
    let indexdef = r#"SELECT indexdef FROM pg_indexes WHERE indexname = 'Idx "Odd" ''Name'''"#;
    let built = vec![
        Check::Rows(
            V::Base,
            indexdef,
            &["CREATE UNIQUE INDEX \"Idx \"\"Odd\"\" 'Name'\" ON \"Idx \"\"S\"\"\".\"Fru \"\"T\"\"\" USING btree (\"Na\"\"me\")"],
        ),
        Check::Ok(V::Old, r#"INSERT INTO "Fru ""T""" VALUES (2, 'a')"#),
        Check::Fails(
            V::New,
            r#"INSERT INTO "Fru ""T""" VALUES (3, 'a')"#,
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Fails(
            V::Old,
            r#"INSERT INTO "Fru ""T""" VALUES (3, 'a')"#,
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Rows(
            V::New,
            r#"SELECT "Id Col", "Na""me" FROM "Fru ""T""" ORDER BY 1"#,
            &["1|b", "2|a"],
        ),
        Check::Ok(V::New, r#"DELETE FROM "Fru ""T""" WHERE "Id Col" = 2"#),
    ];
    OddCase {
        schema: "Idx \"S\"",
        case: Case {
            setup: vec![setup],
            seed: r#"INSERT INTO "Idx ""S"""."Fru ""T""" VALUES (1, 'b')"#,
            migration,
            after_start: built.clone(),
            after_rollback: vec![
                Check::Rows(
                    V::Base,
                    r#"SELECT count(*) FROM pg_indexes WHERE indexname = 'Idx "Odd" ''Name'''"#,
                    &["0"],
                ),
                Check::Ok(V::Old, r#"INSERT INTO "Fru ""T""" VALUES (2, 'b')"#),
                Check::Ok(V::Old, r#"DELETE FROM "Fru ""T""" WHERE "Id Col" = 2"#),
            ],
            after_complete: built,
        },
    }
}

fn create_table() -> OddCase {
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

fn drop_column() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Weird "T"
      columns:
        - {name: Key Col, type: int, pk: true}
        - {name: Drop "Me", type: text, nullable: true}
"#,
    );
    let migration = yaml(
        "02_odd",
        r#"operations:
  - drop_column: {table: Weird "T", column: Drop "Me"}
"#,
    );
    OddCase {
        schema: "App \"S\"",
        case: Case {
            setup: vec![setup],
            seed: r#"INSERT INTO "App ""S"""."Weird ""T""" VALUES (1, 'a')"#,
            migration,
            after_start: vec![
                Check::Fails(
                    V::New,
                    r#"SELECT "Drop ""Me""" FROM "Weird ""T""""#,
                    SqlState::UNDEFINED_COLUMN,
                ),
                Check::Rows(V::Old, r#"SELECT "Drop ""Me""" FROM "Weird ""T""""#, &["a"]),
            ],
            after_rollback: vec![Check::Rows(
                V::Old,
                r#"SELECT "Drop ""Me""" FROM "Weird ""T""""#,
                &["a"],
            )],
            after_complete: vec![Check::Rows(
                V::Base,
                r#"SELECT attname FROM pg_attribute WHERE attrelid = '"App ""S"""."Weird ""T"""'::regclass
                    AND attnum > 0 AND NOT attisdropped"#,
                &["Key Col"],
            )],
        },
    }
}

fn drop_constraint() -> OddCase {
    let migration = yaml(
        "02_odd",
        r#"operations:
  - drop_constraint:
      table: Po sts
      name: Len "Chk"
      up: '"Ti""tle"'
      down: SELECT CASE WHEN length("Ti""tle") <= 3 THEN LPAD("Ti""tle", 4, '-') ELSE "Ti""tle" END
"#,
    );
    let checks = r#"SELECT conname FROM pg_constraint WHERE conrelid = '"Drop ""C"""."Po sts"'::regclass AND contype = 'c'
        AND conname NOT LIKE '\_pgbaton%' ORDER BY 1"#;
    OddCase {
        schema: "Drop \"C\"",
        case: Case {
            setup: vec![],
            seed: r#"CREATE TABLE "Drop ""C"""."Po sts" (id serial PRIMARY KEY,
                         "Ti""tle" text NOT NULL CONSTRAINT "Len ""Chk""" CHECK (length("Ti""tle") > 3));
                     INSERT INTO "Drop ""C"""."Po sts" ("Ti""tle") VALUES ('long title');"#,
            migration,
            after_start: vec![
                Check::Ok(V::New, r#"INSERT INTO "Po sts" ("Ti""tle") VALUES ('ab')"#),
                Check::Rows(
                    V::Old,
                    r#"SELECT "Ti""tle" FROM "Po sts" WHERE id > 1"#,
                    &["--ab"],
                ),
                Check::Rows(
                    V::New,
                    r#"SELECT "Ti""tle" FROM "Po sts" ORDER BY id"#,
                    &["long title", "ab"],
                ),
                Check::Fails(
                    V::Old,
                    r#"INSERT INTO "Po sts" ("Ti""tle") VALUES ('xy')"#,
                    SqlState::CHECK_VIOLATION,
                ),
                Check::Fails(
                    V::New,
                    r#"INSERT INTO "Po sts" ("Ti""tle") VALUES (NULL)"#,
                    SqlState::NOT_NULL_VIOLATION,
                ),
                Check::Ok(V::Old, r#"DELETE FROM "Po sts" WHERE id > 1"#),
            ],
            after_rollback: vec![
                Check::Rows(V::Base, checks, &["Len \"Chk\""]),
                Check::Fails(
                    V::Old,
                    r#"INSERT INTO "Po sts" ("Ti""tle") VALUES ('xy')"#,
                    SqlState::CHECK_VIOLATION,
                ),
            ],
            after_complete: vec![
                Check::Rows(V::Base, checks, &[]),
                Check::Ok(V::New, r#"INSERT INTO "Po sts" ("Ti""tle") VALUES ('xy')"#),
                Check::Rows(
                    V::New,
                    r#"SELECT "Ti""tle" FROM "Po sts" ORDER BY id"#,
                    &["long title", "xy"],
                ),
            ],
        },
    }
}

fn drop_index() -> OddCase {
    let migration = yaml(
        "02_odd",
        "operations:\n  - drop_index: {name: 'Idx \"N\" ''1'''}\n",
    );
    let index = r#"SELECT count(*) FROM pg_indexes WHERE schemaname = 'DI "S"' AND indexname = 'Idx "N" ''1'''"#;
    let during = vec![
        Check::Rows(V::Base, index, &["1"]),
        Check::Ok(V::Old, r#"INSERT INTO "Fr uits" ("Na""me") VALUES ('old')"#),
        Check::Ok(V::New, r#"INSERT INTO "Fr uits" ("Na""me") VALUES ('new')"#),
        Check::Rows(
            V::New,
            r#"SELECT "Na""me" FROM "Fr uits" WHERE id > 1 ORDER BY id"#,
            &["old", "new"],
        ),
        Check::Rows(
            V::Old,
            r#"SELECT "Na""me" FROM "Fr uits" WHERE id > 1 ORDER BY id"#,
            &["old", "new"],
        ),
        Check::Ok(V::Old, r#"DELETE FROM "Fr uits" WHERE id > 1"#),
    ];
    OddCase {
        schema: "DI \"S\"",
        case: Case {
            setup: vec![],
            seed: r#"CREATE TABLE "DI ""S"""."Fr uits" (id serial PRIMARY KEY, "Na""me" text);
                     CREATE INDEX "Idx ""N"" '1'" ON "DI ""S"""."Fr uits" ("Na""me");
                     INSERT INTO "DI ""S"""."Fr uits" ("Na""me") VALUES ('apple');"#,
            migration,
            after_start: during,
            after_rollback: vec![Check::Rows(V::Base, index, &["1"])],
            after_complete: vec![
                Check::Rows(V::Base, index, &["0"]),
                Check::Rows(
                    V::Base,
                    r#"SELECT indexname FROM pg_indexes WHERE schemaname = 'DI "S"'"#,
                    &["Fr uits_pkey"],
                ),
                Check::Ok(
                    V::New,
                    r#"INSERT INTO "Fr uits" ("Na""me") VALUES ('after')"#,
                ),
                Check::Rows(
                    V::New,
                    r#"SELECT "Na""me" FROM "Fr uits" ORDER BY id"#,
                    &["apple", "after"],
                ),
            ],
        },
    }
}

fn drop_multicolumn_constraint() -> OddCase {
    let migration = yaml(
        "02_drop_fk",
        r#"operations:
  - drop_multicolumn_constraint:
      table: Tick ets
      name: 'FK "sellers"'
      up:
        'Na"me': '"Na""me"'
      down:
        'Na"me': 'SELECT CASE WHEN EXISTS (SELECT 1 FROM shop."Sel lers" s WHERE s.sname = "Na""me" AND s.szip = zip) THEN "Na""me" END'
        zip: zip
"#,
    );
    let q = "SELECT \"Na\"\"me\", zip FROM \"Tick ets\" ORDER BY id";
    OddCase {
        schema: "shop",
        case: Case {
            setup: vec![],
            seed: "SET search_path = shop;
                   CREATE TABLE \"Sel lers\" (sname text, szip int, UNIQUE (sname, szip));
                   INSERT INTO \"Sel lers\" VALUES ('alice', 1);
                   CREATE TABLE \"Tick ets\" (id serial PRIMARY KEY, \"Na\"\"me\" text, zip int,
                       CONSTRAINT \"FK \"\"sellers\"\"\" FOREIGN KEY (\"Na\"\"me\", zip) REFERENCES \"Sel lers\" (sname, szip));
                   INSERT INTO \"Tick ets\" (\"Na\"\"me\", zip) VALUES ('alice', 1);
                   RESET search_path;",
            migration,
            after_start: vec![
                Check::Ok(
                    V::New,
                    "INSERT INTO \"Tick ets\" (\"Na\"\"me\", zip) VALUES ('nobody', 2)",
                ),
                Check::Rows(V::New, q, &["alice|1", "nobody|2"]),
                Check::Rows(V::Old, q, &["alice|1", "NULL|2"]),
                Check::Fails(
                    V::Old,
                    "INSERT INTO \"Tick ets\" (\"Na\"\"me\", zip) VALUES ('nobody', 3)",
                    SqlState::FOREIGN_KEY_VIOLATION,
                ),
                Check::Ok(V::Old, "DELETE FROM \"Tick ets\" WHERE id > 1"),
            ],
            after_rollback: vec![Check::Fails(
                V::Old,
                "INSERT INTO \"Tick ets\" (\"Na\"\"me\", zip) VALUES ('nobody', 3)",
                SqlState::FOREIGN_KEY_VIOLATION,
            )],
            after_complete: vec![
                Check::Rows(
                    V::Base,
                    "SELECT count(*) FROM pg_constraint WHERE connamespace = 'shop'::regnamespace AND contype = 'f'",
                    &["0"],
                ),
                Check::Ok(
                    V::New,
                    "INSERT INTO \"Tick ets\" (\"Na\"\"me\", zip) VALUES ('nobody', 3)",
                ),
                Check::Rows(V::New, q, &["alice|1", "nobody|3"]),
            ],
        },
    }
}

fn drop_table() -> OddCase {
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

fn raw_sql() -> OddCase {
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

fn rename_column() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Weird "T"
      columns:
        - {name: Key Col, type: int, pk: true}
        - {name: Old "Name", type: text, nullable: true}
"#,
    );
    let migration = yaml(
        "02_odd",
        r#"operations:
  - rename_column: {table: Weird "T", from: Old "Name", to: New 'Name'}
"#,
    );
    OddCase {
        schema: "App \"S\"",
        case: Case {
            setup: vec![setup],
            seed: r#"INSERT INTO "App ""S"""."Weird ""T""" VALUES (1, 'a')"#,
            migration,
            after_start: vec![
                Check::Rows(V::New, r#"SELECT "New 'Name'" FROM "Weird ""T""""#, &["a"]),
                Check::Rows(
                    V::Old,
                    r#"SELECT "Old ""Name""" FROM "Weird ""T""""#,
                    &["a"],
                ),
            ],
            after_rollback: vec![Check::Rows(
                V::Old,
                r#"SELECT "Old ""Name""" FROM "Weird ""T""""#,
                &["a"],
            )],
            after_complete: vec![Check::Rows(
                V::Base,
                r#"SELECT attname FROM pg_attribute WHERE attrelid = '"App ""S"""."Weird ""T"""'::regclass
                    AND attnum > 0 AND NOT attisdropped ORDER BY attnum"#,
                &["Key Col", "New 'Name'"],
            )],
        },
    }
}

fn rename_constraint() -> OddCase {
    let migration = yaml(
        "02_odd",
        r#"operations:
  - rename_constraint: {table: Peo "ple", from: Age "Chk", to: Age 'Positive'}
"#,
    );
    let names = r#"SELECT conname FROM pg_constraint WHERE conrelid = '"RC ""S"""."Peo ""ple"""'::regclass
        AND contype = 'c'"#;
    let enforced = [
        Check::Fails(
            V::Old,
            r#"INSERT INTO "Peo ""ple""" VALUES (2, -1)"#,
            SqlState::CHECK_VIOLATION,
        ),
        Check::Fails(
            V::New,
            r#"INSERT INTO "Peo ""ple""" VALUES (2, -1)"#,
            SqlState::CHECK_VIOLATION,
        ),
        Check::Ok(V::New, r#"INSERT INTO "Peo ""ple""" VALUES (2, 1)"#),
        Check::Rows(
            V::Old,
            r#"SELECT "A""ge" FROM "Peo ""ple""" ORDER BY id"#,
            &["30", "1"],
        ),
        Check::Ok(V::Old, r#"DELETE FROM "Peo ""ple""" WHERE id = 2"#),
    ];
    let mut after_start = vec![Check::Rows(V::Base, names, &["Age \"Chk\""])];
    after_start.extend(enforced.iter().cloned());
    let mut after_complete = vec![Check::Rows(V::Base, names, &["Age 'Positive'"])];
    after_complete.extend(enforced.iter().cloned());
    OddCase {
        schema: "RC \"S\"",
        case: Case {
            setup: vec![],
            seed: r#"CREATE TABLE "RC ""S"""."Peo ""ple""" (id int PRIMARY KEY,
                         "A""ge" int CONSTRAINT "Age ""Chk""" CHECK ("A""ge" > 0));
                     INSERT INTO "RC ""S"""."Peo ""ple""" VALUES (1, 30);"#,
            migration,
            after_start,
            after_rollback: vec![Check::Rows(V::Base, names, &["Age \"Chk\""])],
            after_complete,
        },
    }
}

fn rename_table() -> OddCase {
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

fn set_replica_identity() -> OddCase {
    let setup = yaml(
        "01_setup",
        r#"operations:
  - create_table:
      name: Fruits "F"
      columns:
        - {name: Id Col, type: int, pk: true}
      constraints:
        - {name: Uniq "Id", type: unique, columns: [Id Col]}
"#,
    );
    let migration = yaml(
        "02_ri",
        "operations:\n  - set_replica_identity: {table: Fruits \"F\", identity: {type: index, index: Uniq \"Id\"}}\n",
    );
    let q = r#"SELECT c.relreplident, coalesce((SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                WHERE i.indrelid = c.oid AND i.indisreplident), '-')
                FROM pg_class c WHERE c.oid = '"Fruits ""F"""'::regclass"#;
    let set = vec![
        Check::Rows(V::Base, q, &["i|Uniq \"Id\""]),
        Check::Ok(
            V::New,
            r#"INSERT INTO "Fruits ""F""" VALUES (1); DELETE FROM "Fruits ""F""""#,
        ),
    ];
    OddCase {
        schema: "Rep \"L\"",
        case: Case {
            setup: vec![setup],
            seed: "",
            migration,
            after_start: set.clone(),
            after_rollback: vec![Check::Rows(V::Base, q, &["d|-"])],
            after_complete: set,
        },
    }
}
