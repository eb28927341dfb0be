//! Checks after a run: the final schema, the derived column and every committed write.

use super::*;

pub(super) async fn final_schema(
    client: &Client,
    schema: &str,
) -> Result<(Vec<ColumnInfo>, Vec<String>), DemoError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull \
             FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&QualName::new(schema, TABLE).to_string()],
        )
        .await
        .map_err(db("reading the final schema"))?;
    let columns = rows
        .iter()
        .map(|r| ColumnInfo {
            name: r.get(0),
            data_type: r.get(1),
            nullable: r.get(2),
        })
        .collect();
    let pk = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum",
            &[&QualName::new(schema, TABLE).to_string()],
        )
        .await
        .map_err(db("reading the primary key"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((columns, pk))
}

/// What the migrated table must look like, whichever way it was changed.
pub(super) fn schema_problems(columns: &[ColumnInfo], pk: &[String]) -> Vec<String> {
    let expected = [
        ("id", "bigint", false),
        ("full_name", "text", false),
        ("email", "text", false),
        ("created_at", "timestamp with time zone", false),
        ("email_domain", "text", false),
    ];
    let mut problems = Vec::new();
    for (name, data_type, nullable) in expected {
        match columns.iter().find(|c| c.name == name) {
            None => problems.push(format!("column {name} is missing")),
            Some(c) if c.data_type != data_type => {
                problems.push(format!("column {name} is {}, not {data_type}", c.data_type))
            }
            Some(c) if c.nullable != nullable => problems.push(format!(
                "column {name} is {}",
                if c.nullable { "nullable" } else { "NOT NULL" }
            )),
            Some(_) => {}
        }
    }
    for c in columns {
        if !expected.iter().any(|(n, _, _)| *n == c.name) {
            problems.push(format!("unexpected column {} ({})", c.name, c.data_type));
        }
    }
    if pk != ["id"] {
        problems.push(format!("the primary key is ({}), not (id)", pk.join(", ")));
    }
    problems
}

/// What [`check_table`] found.
pub(super) struct TableCheck {
    columns: Vec<ColumnInfo>,
    primary_key: Vec<String>,
    problems: Vec<String>,
    derived_mismatches: i64,
    writes: WriteCheck,
}

impl TableCheck {
    pub(super) fn apply(self, run: &mut RunReport) {
        run.final_schema = self.columns;
        run.primary_key = self.primary_key;
        run.schema_problems = self.problems;
        run.derived_mismatches = self.derived_mismatches;
        run.writes = self.writes;
    }
}

/// Checks the migrated table: its shape, no trigger left, `email_domain` right on every row, and
/// every committed write of `logs` present.
pub(super) async fn check_table(
    client: &Client,
    schema: &str,
    logs: &[&WorkloadReport],
) -> Result<TableCheck, DemoError> {
    let table = QualName::new(schema, TABLE);
    let (columns, primary_key) = final_schema(client, schema).await?;
    let mut problems = schema_problems(&columns, &primary_key);
    let triggers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal",
            &[&table.to_string()],
        )
        .await
        .map_err(db("counting triggers"))?
        .get(0);
    if triggers > 0 {
        problems.push(format!("{triggers} trigger(s) left on the table"));
    }
    let mut check = TableCheck {
        columns,
        primary_key,
        problems,
        derived_mismatches: 0,
        writes: WriteCheck::default(),
    };
    if !check.problems.is_empty() {
        return Ok(check);
    }
    check.derived_mismatches = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {table} \
                 WHERE email_domain IS DISTINCT FROM split_part(email, '@', 2)"
            ),
            &[],
        )
        .await
        .map_err(db("checking email_domain"))?
        .get(0);
    let sql = format!("SELECT id, full_name FROM {table}");
    for report in logs {
        check.writes.logged += report.writes.len();
        let mismatches = report
            .writes
            .verify_table(client, &sql)
            .await
            .map_err(db("checking the write log"))?;
        check.writes.lost += mismatches.len();
        let room = 5usize.saturating_sub(check.writes.examples.len());
        check
            .writes
            .examples
            .extend(mismatches.iter().take(room).map(|m| m.to_string()));
    }
    Ok(check)
}
