//! Cases of the operations on constraints and indexes. (See `op_odd_names.rs`.)

use crate::common::lifecycle::*;
use crate::OddCase;

pub(crate) fn create_constraint() -> OddCase {
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

pub(crate) fn drop_constraint() -> OddCase {
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

pub(crate) fn drop_multicolumn_constraint() -> OddCase {
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

pub(crate) fn rename_constraint() -> OddCase {
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

pub(crate) fn create_index() -> OddCase {
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

pub(crate) fn drop_index() -> OddCase {
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
