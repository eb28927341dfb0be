//! Cases of the operations on columns. (See `op_odd_names.rs`.)

use crate::common::lifecycle::*;
use crate::OddCase;

pub(crate) fn add_column() -> OddCase {
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

pub(crate) fn alter_column() -> OddCase {
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

pub(crate) fn drop_column() -> OddCase {
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

pub(crate) fn rename_column() -> OddCase {
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

pub(crate) fn set_replica_identity() -> OddCase {
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
