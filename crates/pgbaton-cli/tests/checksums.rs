//! A history that notices edits: each applied file's checksum (of its parsed content) is
//! recorded; `migrate` refuses, naming the file, when an applied file changed ("divergent") or
//! disappeared ("missing"), `start` refuses a changed applied file, `status --dir` warns; the
//! flags accept them deliberately; re-indenting a file or converting it to JSON is not an edit;
//! rows recorded before checksums existed get theirs on first sight, after the state schema is
//! upgraded in place.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::scalar_i64;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let path = std::env::temp_dir().join(format!(
            "pgbaton-sums-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Dir(path)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write migration");
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.0.join(name)).expect("remove migration");
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ITEMS: &str = "operations:
  - create_table:
      name: items
      columns:
        - name: id
          type: bigint
          pk: true
        - name: label
          type: text
";

/// The same document, indented and ordered differently.
const ITEMS_REINDENTED: &str = "operations:
- create_table:
    columns:
    - {name: id, pk: true, type: bigint}
    -   type: text
        name: label
    name: items
";

const ITEMS_EDITED: &str = "operations:
  - create_table:
      name: items
      columns:
        - name: id
          type: bigint
          pk: true
        - name: label
          type: varchar(100)
";

const ADD_PRICE: &str = "operations:
  - add_column:
      table: items
      column:
        name: price
        type: numeric
        nullable: true
";

const ADD_PRICE_JSON: &str = r#"{"operations": [{"add_column": {"column": {"nullable": true, "type": "numeric", "name": "price"}, "table": "items"}}]}"#;

const ADD_NOTE: &str = "operations:
  - add_column:
      table: items
      column:
        name: note
        type: text
        nullable: true
";

fn run(url: &str, args: &[&str]) -> (i32, String) {
    common::pgbaton_run(url, args)
}

async fn checksums(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT name || '=' || coalesce(checksum, 'NULL') FROM pgbaton.migrations ORDER BY name",
        &[],
    )
    .await
    .expect("checksums")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn edited_file_refused_by_name_reindented_accepted_missing_and_flags() {
    let db = common::fresh_db().await;
    let c = &db.client;
    let url = &db.url;
    let dir = Dir::new("edit");
    dir.write("01_items.yaml", ITEMS);
    dir.write("02_add_price.yaml", ADD_PRICE);
    assert_eq!(run(url, &["init"]).0, 0);
    let (code, out) = run(url, &["migrate", dir.s(), "--complete"]);
    assert_eq!(code, 0, "{out}");
    let recorded = checksums(c).await;
    assert!(
        recorded.iter().all(|r| !r.ends_with("=NULL")),
        "{recorded:?}"
    );
    assert_eq!(
        recorded[0],
        format!(
            "01_items={}",
            pgbaton::history::checksum(
                &pgbaton::format::load(&dir.path().join("01_items.yaml"))
                    .expect("load")
                    .raw
            )
        )
    );
    let before = common::schema_dump(url, "public");

    // An applied file edited: refused, naming it; nothing runs (the new file stays pending).
    dir.write("01_items.yaml", ITEMS_EDITED);
    dir.write("03_add_note.yaml", ADD_NOTE);
    let (code, out) = run(url, &["migrate", dir.s()]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("divergent") && out.contains("01_items.yaml"),
        "{out}"
    );
    assert!(out.contains("--accept-divergent"), "{out}");
    assert_eq!(before, common::schema_dump(url, "public"), "nothing ran");
    assert_eq!(recorded, checksums(c).await);
    // `start` of the edited file names it too (not just "already applied").
    let file = dir.path().join("01_items.yaml");
    let (code, out) = run(url, &["start", file.to_str().expect("utf-8")]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("divergent") && out.contains("01_items.yaml"),
        "{out}"
    );
    // `status --dir` warns and lists what is pending.
    let (code, out) = run(url, &["status", "--dir", dir.s()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: divergent") && out.contains("01_items.yaml"),
        "{out}"
    );
    assert!(
        out.contains("pending in") && out.contains("03_add_note"),
        "{out}"
    );

    // Re-indented (keys reordered) and converted to JSON: the same content, accepted.
    dir.write("01_items.yaml", ITEMS_REINDENTED);
    dir.remove("02_add_price.yaml");
    dir.write("02_add_price.json", ADD_PRICE_JSON);
    let (code, out) = run(url, &["migrate", dir.s(), "--complete"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("03_add_note"), "{out}");
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'items' AND column_name = 'note'").await,
        1
    );

    // An applied file gone: "missing", refused until accepted deliberately.
    dir.remove("02_add_price.json");
    dir.write(
        "04_drop_note.yaml",
        "operations:\n  - drop_column:\n      table: items\n      column: note\n",
    );
    let (code, out) = run(url, &["migrate", dir.s()]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("missing") && out.contains("02_add_price"),
        "{out}"
    );
    assert!(out.contains("--accept-missing"), "{out}");
    let (code, out) = run(url, &["status", "--dir", dir.s()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: missing") && out.contains("02_add_price"),
        "{out}"
    );
    let (code, out) = run(url, &["migrate", dir.s(), "--accept-missing", "--complete"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("04_drop_note"), "{out}");

    // An edit accepted deliberately: its new checksum is recorded, and no longer divergent.
    dir.write("02_add_price.json", ADD_PRICE_JSON);
    dir.write("01_items.yaml", ITEMS_EDITED);
    let (code, out) = run(url, &["migrate", dir.s(), "--accept-divergent"]);
    assert_eq!(code, 0, "{out}");
    let edited = pgbaton::history::checksum(
        &pgbaton::format::load(&dir.path().join("01_items.yaml"))
            .expect("load")
            .raw,
    );
    assert!(checksums(c).await.contains(&format!("01_items={edited}")));
    let (code, out) = run(url, &["migrate", dir.s()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to migrate"), "{out}");
}

/// A state schema from before checksums (no `checksum`, `origin`, `bundle` columns, the old
/// status check): read-only commands work on it, `migrate` upgrades it in place and records the
/// checksums of files applied before on first sight — refusing one that changed since.
#[tokio::test(flavor = "multi_thread")]
async fn older_state_schema_upgraded_and_checksums_recorded_on_first_sight() {
    let db = common::fresh_db().await;
    let c = &db.client;
    let url = &db.url;
    let dir = Dir::new("old");
    dir.write("01_items.yaml", ITEMS);
    dir.write("02_add_price.yaml", ADD_PRICE);
    assert_eq!(run(url, &["init"]).0, 0);
    let (code, out) = run(url, &["migrate", dir.s(), "--complete"]);
    assert_eq!(code, 0, "{out}");
    // Back to the state schema of the previous release.
    common::exec(
        c,
        "ALTER TABLE pgbaton.migrations DROP CONSTRAINT migrations_status_check;
         ALTER TABLE pgbaton.migrations DROP COLUMN checksum, DROP COLUMN origin, DROP COLUMN bundle;
         ALTER TABLE pgbaton.migrations ADD CONSTRAINT migrations_status_check
           CHECK (status IN ('starting', 'active', 'completing', 'rolling_back', 'completed', 'rolled_back'))",
    )
    .await;
    let (code, out) = run(url, &["status", "--dir", dir.s()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("latest completed: 02_add_price") && out.contains("pending in"),
        "{out}"
    );
    let (code, out) = run(url, &["latest", "migration"]);
    assert_eq!((code, out.trim()), (0, "02_add_price"));

    // A file edited before the upgrade is still caught: its applied document is on record.
    dir.write("02_add_price.yaml", &ADD_PRICE.replace("numeric", "bigint"));
    let (code, out) = run(url, &["migrate", dir.s()]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("divergent") && out.contains("02_add_price.yaml"),
        "{out}"
    );
    // The upgrade happened in place (the rows are kept), first sight recorded nothing yet for
    // the refused run.
    assert_eq!(checksums(c).await, ["01_items=NULL", "02_add_price=NULL"]);

    dir.write("02_add_price.yaml", ADD_PRICE);
    let (code, out) = run(url, &["migrate", dir.s()]);
    assert_eq!(code, 0, "{out}");
    let sums = checksums(c).await;
    assert!(sums.iter().all(|s| !s.ends_with("=NULL")), "{sums:?}");
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM pgbaton.migrations WHERE origin = 'pgbaton' AND status = 'completed'").await,
        2
    );
}
