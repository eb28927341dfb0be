//! The conversion proper: each change of the file into operations, merging the statements on
//! one column (see the module documentation of [`super`]).

use super::value::{MapBuilder, V};
use super::{first_line, placeholder, Catalog, Item, Note, NoteKind};
use crate::sql::model::{Change, ColumnSpec, ConstraintKind, ConstraintSpec, IndexKey};

pub(super) struct Converter<'a> {
    pub(super) catalog: Catalog,
    pub(super) items: Vec<Item<'a>>,
    pub(super) consumed: Vec<bool>,
    pub(super) notes: Vec<Note>,
    pub(super) operations: Vec<V>,
}

fn op(kind: &str, body: V) -> V {
    V::Map(vec![(kind.to_string(), body)])
}

impl Converter<'_> {
    fn note(&mut self, line: usize, kind: NoteKind, message: impl Into<String>) {
        self.notes.push(Note {
            line,
            kind,
            message: message.into(),
        });
    }

    /// A placeholder for `field` of the next operation, with a note.
    fn todo(&mut self, line: usize, field: &str, what: &str) -> String {
        let index = self.operations.len();
        self.note(
            line,
            NoteKind::Placeholder,
            format!("operations[{index}].{field}: {what}"),
        );
        placeholder(what)
    }

    /// The index of the first unconsumed item after `i` for which `f` holds.
    fn find_after(&self, i: usize, f: impl Fn(&Change) -> bool) -> Option<usize> {
        (i + 1..self.items.len()).find(|&j| !self.consumed[j] && f(&self.items[j].change))
    }

    pub(super) fn run(&mut self) {
        for i in 0..self.items.len() {
            if self.consumed[i] {
                continue;
            }
            self.consumed[i] = true;
            let change = self.items[i].change.clone();
            self.convert_one(i, &change);
            self.catalog.learn(&change, true);
        }
        self.renames_that_lose_data();
    }

    fn convert_one(&mut self, i: usize, change: &Change) {
        let line = self.items[i].line;
        match change {
            Change::AddColumn { table, column } => self.add_column(i, table, column),
            Change::AlterType {
                table,
                column,
                type_,
                using,
            } => self.alter_type(i, table, column, type_, using.as_deref()),
            Change::SetNotNull { table, column } => self.set_not_null(line, table, column),
            Change::DropNotNull { table, column } => self.drop_not_null(line, table, column),
            Change::Default {
                table,
                column,
                default,
            } => self.set_default(table, column, default.as_deref()),
            Change::AddConstraint { table, constraint } => {
                self.add_constraint(i, table, constraint)
            }
            Change::CreateTable {
                table,
                columns,
                constraints,
            } => self.create_table(i, table, columns, constraints),
            Change::CreateIndex {
                name,
                table,
                keys,
                unique,
                method,
                predicate,
                ..
            } => self.create_index(i, name, table, keys, *unique, method, predicate.as_deref()),
            Change::DropColumn { table, column } => self.drop_column(line, table, column),
            Change::RenameColumn { table, from, to } => self.operations.push(op(
                "rename_column",
                MapBuilder::new()
                    .s("table", table)
                    .s("from", from)
                    .s("to", to)
                    .build(),
            )),
            Change::RenameTable { from, to } => self.operations.push(op(
                "rename_table",
                MapBuilder::new().s("from", from).s("to", to).build(),
            )),
            Change::RenameConstraint { table, from, to } => self.operations.push(op(
                "rename_constraint",
                MapBuilder::new()
                    .s("table", table)
                    .s("from", from)
                    .s("to", to)
                    .build(),
            )),
            Change::DropTable { table } => self.operations.push(op(
                "drop_table",
                MapBuilder::new().s("name", table).build(),
            )),
            Change::DropIndex { name, .. } => self.operations.push(op(
                "drop_index",
                MapBuilder::new().s("name", name).build(),
            )),
            Change::Update { table, set, filter } => {
                if !self.update_then_not_null(i, table, set, filter.as_deref()) {
                    self.raw_sql(i, "an UPDATE runs as one transaction over every row it matches; pgbaton's add_column/alter_column `up` backfills in batches");
                }
            }
            Change::ValidateConstraint { .. } => {
                self.raw_sql(i, "VALIDATE CONSTRAINT kept as written (SHARE UPDATE EXCLUSIVE: blocks no reads or writes)")
            }
            Change::Other { tag, .. } if tag.starts_with("a statement with") => {
                let why = format!("{tag}: kept as a `sql` operation, run as written");
                self.raw_sql(i, &why)
            }
            _ => self.raw_sql(i, "no pgbaton operation does this: kept as a `sql` operation, run as written"),
        }
    }

    fn set_not_null(&mut self, line: usize, table: &str, column: &str) {
        let up = match self.catalog.column(table, column).and_then(|c| c.default.clone()) {
                    Some(d) => format!("COALESCE({}, {d})", ident(column)),
                    None => self.todo(
                        line,
                        "alter_column.up",
                        &format!("the value of {column} for rows where it is NULL (e.g. COALESCE({column}, <value>))"),
                    ),
                };
        self.alter_not_null(table, column, up);
    }

    fn drop_not_null(&mut self, line: usize, table: &str, column: &str) {
        let down = match self.catalog.column(table, column).and_then(|c| c.default.clone()) {
                    Some(d) => format!("COALESCE({}, {d})", ident(column)),
                    None => self.todo(
                        line,
                        "alter_column.down",
                        &format!("the value the old release gets for a NULL {column} (e.g. COALESCE({column}, <value>))"),
                    ),
                };
        self.operations.push(op(
            "alter_column",
            MapBuilder::new()
                .s("table", table)
                .s("column", column)
                .flag("nullable", true)
                .s("up", ident(column))
                .s("down", down)
                .build(),
        ));
    }

    fn set_default(&mut self, table: &str, column: &str, default: Option<&str>) {
        let d = match default {
            Some(d) => V::Str(d.to_string()),
            // `default: null` drops the default.
            None => V::Null,
        };
        let body = MapBuilder::new()
            .s("table", table)
            .s("column", column)
            .put("default", d)
            .build();
        self.operations.push(op("alter_column", body));
    }

    fn drop_column(&mut self, line: usize, table: &str, column: &str) {
        let mut body = MapBuilder::new()
            .s("table", table)
            .s("column", column)
            .build();
        if let Some(c) = self.catalog.column(table, column).cloned() {
            if c.not_null && c.default.is_none() {
                let down = self.todo(
                            line,
                            "drop_column.down",
                            &format!("the value the old release gets for {column} in rows the new release writes"),
                        );
                body.set("down", V::Str(down));
            }
        }
        self.operations.push(op("drop_column", body));
    }

    /// A `sql` operation of item `i`'s statement, with a warning. A statement with several
    /// changes (an `ALTER TABLE` with several actions) becomes one operation.
    fn raw_sql(&mut self, i: usize, why: &str) {
        let text = self.items[i].text;
        let line = self.items[i].line;
        for j in i + 1..self.items.len() {
            if std::ptr::eq(self.items[j].text, text) && self.items[j].line == line {
                self.consumed[j] = true;
            }
        }
        self.note(
            line,
            NoteKind::Warning,
            format!("{} — {why}", first_line(text)),
        );
        self.operations.push(op(
            "sql",
            MapBuilder::new()
                .s("up", text.trim_end_matches(';'))
                .build(),
        ));
    }

    fn alter_not_null(&mut self, table: &str, column: &str, up: String) {
        self.operations.push(op(
            "alter_column",
            MapBuilder::new()
                .s("table", table)
                .s("column", column)
                .put("nullable", V::Bool(false))
                .s("up", up)
                .s("down", ident(column))
                .build(),
        ));
    }

    /// `UPDATE t SET c = e [WHERE c IS NULL]` followed by `SET NOT NULL` on `c`: one
    /// `alter_column` with `up`.
    fn update_then_not_null(
        &mut self,
        i: usize,
        table: &str,
        set: &[(String, String)],
        filter: Option<&str>,
    ) -> bool {
        let [(column, expr)] = set else {
            return false;
        };
        let is_null_filter = filter.is_some_and(|f| is_null_test(f, column));
        if filter.is_some() && !is_null_filter {
            return false;
        }
        let Some(j) = self.find_after(i, |c| {
            matches!(c, Change::SetNotNull { table: t, column: c } if t == table && c == column)
        }) else {
            return false;
        };
        self.consumed[j] = true;
        let up = if is_null_filter {
            format!("COALESCE({}, {expr})", ident(column))
        } else {
            expr.clone()
        };
        let (l1, l2) = (self.items[i].line, self.items[j].line);
        self.note(
            l1,
            NoteKind::Merged,
            format!("UPDATE (line {l1}) and SET NOT NULL (line {l2}) of {table}.{column} into one alter_column with up: the backfill runs in batches"),
        );
        self.alter_not_null(table, column, up);
        true
    }

    fn add_column(&mut self, i: usize, table: &str, column: &ColumnSpec) {
        let line = self.items[i].line;
        let name = column.name.clone();
        let mut merged = vec![line];
        let mut col = column.clone();
        let mut up: Option<String> = None;
        // The UPDATE that fills the new column, SET NOT NULL, DROP DEFAULT.
        if let Some(j) = self.find_after(i, |c| matches!(c, Change::Update { table: t, set, filter } if t == table && set.len() == 1 && set[0].0 == name && filter.as_deref().is_none_or(|f| is_null_test(f, &name)))) {
            if let Change::Update { set, .. } = &self.items[j].change {
                up = Some(set[0].1.clone());
            }
            self.consumed[j] = true;
            merged.push(self.items[j].line);
        }
        if let Some(j) = self.find_after(
            i,
            |c| matches!(c, Change::SetNotNull { table: t, column: c } if t == table && *c == name),
        ) {
            col.not_null = true;
            self.consumed[j] = true;
            merged.push(self.items[j].line);
        }
        if let Some(j) = self.find_after(i, |c| matches!(c, Change::Default { table: t, column: c, default: None } if t == table && *c == name)) {
            // Existing rows got the default; new rows will not.
            if up.is_none() {
                up = col.default.clone();
            }
            col.default = None;
            self.consumed[j] = true;
            merged.push(self.items[j].line);
        }
        if merged.len() > 1 {
            let lines: Vec<String> = merged.iter().map(usize::to_string).collect();
            self.note(
                line,
                NoteKind::Merged,
                format!(
                    "lines {} on {table}.{name} into one add_column",
                    lines.join(", ")
                ),
            );
        }
        let new_table = self.catalog.created_here(table);
        if up.is_none()
            && col.not_null
            && col.default.is_none()
            && col.generated.is_none()
            && !col.identity
            && !new_table
        {
            up = Some(self.todo(
                line,
                "add_column.up",
                &format!("the value of {name} for the rows that exist (a NOT NULL column with no default)"),
            ));
        }
        let mut body = MapBuilder::new()
            .s("table", table)
            .put("column", column_value(table, &col))
            .build();
        if let Some(up) = up {
            body.set("up", V::Str(up));
        }
        self.operations.push(op("add_column", body));
    }

    fn alter_type(
        &mut self,
        i: usize,
        table: &str,
        column: &str,
        type_: &str,
        using: Option<&str>,
    ) {
        let line = self.items[i].line;
        let up = using
            .map(str::to_string)
            .unwrap_or_else(|| format!("CAST({} AS {type_})", ident(column)));
        let down = match self.catalog.column(table, column) {
            Some(old) if !old.type_.is_empty() => format!("CAST({} AS {})", ident(column), old.type_),
            _ => self.todo(
                line,
                "alter_column.down",
                &format!("the old value of {column} from the new one (e.g. CAST({column} AS <old type>)); the old type is not in this file: pass earlier migrations with --schema-sql"),
            ),
        };
        self.operations.push(op(
            "alter_column",
            MapBuilder::new()
                .s("table", table)
                .s("column", column)
                .s("type", type_)
                .s("up", up)
                .s("down", down)
                .build(),
        ));
    }

    fn add_constraint(&mut self, i: usize, table: &str, c: &ConstraintSpec) {
        let line = self.items[i].line;
        let Some(name) = c.name.clone() else {
            self.raw_sql(i, "a constraint without a name: pgbaton's create_constraint needs one; kept as written");
            return;
        };
        if c.not_valid {
            if let Some(j) = self.find_after(i, |x| matches!(x, Change::ValidateConstraint { table: t, name: n } if t == table && *n == name)) {
                self.consumed[j] = true;
                let l2 = self.items[j].line;
                self.note(line, NoteKind::Merged, format!("ADD CONSTRAINT {name} NOT VALID (line {line}) and VALIDATE (line {l2}) into one create_constraint"));
            }
        }
        let identity =
            |cols: &[String]| V::Map(cols.iter().map(|c| (c.clone(), V::Str(ident(c)))).collect());
        let body = match &c.kind {
            ConstraintKind::Check(expr) => {
                let cols = referenced_columns(expr);
                MapBuilder::new()
                    .s("table", table)
                    .s("name", name)
                    .s("type", "check")
                    .put("columns", strs(&cols))
                    .s("check", expr)
                    .put("up", identity(&cols))
                    .put("down", identity(&cols))
            }
            ConstraintKind::ForeignKey {
                columns,
                table: rt,
                ref_columns,
                on_delete,
                on_update,
            } => {
                let mut r = MapBuilder::new()
                    .s("table", rt)
                    .put("columns", strs(ref_columns));
                if on_delete != "NO ACTION" {
                    r = r.s("on_delete", on_delete);
                }
                if on_update != "NO ACTION" {
                    r = r.s("on_update", on_update);
                }
                MapBuilder::new()
                    .s("table", table)
                    .s("name", name)
                    .s("type", "foreign_key")
                    .put("columns", strs(columns))
                    .put("references", r.build())
                    .put("up", identity(columns))
                    .put("down", identity(columns))
            }
            ConstraintKind::Unique {
                columns,
                using_index: None,
            }
            | ConstraintKind::PrimaryKey {
                columns,
                using_index: None,
            } => {
                let kind = if matches!(c.kind, ConstraintKind::Unique { .. }) {
                    "unique"
                } else {
                    "primary_key"
                };
                MapBuilder::new()
                    .s("table", table)
                    .s("name", name)
                    .s("type", kind)
                    .put("columns", strs(columns))
                    .put("up", identity(columns))
                    .put("down", identity(columns))
            }
            _ => {
                self.raw_sql(i, "kept as written: no pgbaton operation builds this constraint without blocking (EXCLUDE), or it is already built from an index");
                return;
            }
        };
        self.operations.push(op("create_constraint", body.build()));
    }

    fn create_table(
        &mut self,
        i: usize,
        table: &str,
        columns: &[ColumnSpec],
        constraints: &[ConstraintSpec],
    ) {
        let pk_cols: Vec<String> = constraints
            .iter()
            .find_map(|c| match &c.kind {
                ConstraintKind::PrimaryKey { columns, .. } => Some(columns.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let cols: Vec<V> = columns
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if pk_cols.contains(&c.name) {
                    c.primary_key = true;
                    c.not_null = true;
                }
                column_value(table, &c)
            })
            .collect();
        let mut cons = Vec::new();
        for c in constraints {
            let name = c
                .name
                .clone()
                .unwrap_or_else(|| format!("{table}_{}", cons.len() + 1));
            let v = match &c.kind {
                ConstraintKind::PrimaryKey { .. } => continue,
                ConstraintKind::Unique { columns, .. } => MapBuilder::new()
                    .s("name", name)
                    .s("type", "unique")
                    .put("columns", strs(columns)),
                ConstraintKind::Check(expr) => MapBuilder::new()
                    .s("name", name)
                    .s("type", "check")
                    .s("check", expr),
                ConstraintKind::ForeignKey {
                    columns,
                    table: rt,
                    ref_columns,
                    on_delete,
                    ..
                } => {
                    let mut r = MapBuilder::new()
                        .s("table", rt)
                        .put("columns", strs(ref_columns));
                    if on_delete != "NO ACTION" {
                        r = r.s("on_delete", on_delete);
                    }
                    MapBuilder::new()
                        .s("name", name)
                        .s("type", "foreign_key")
                        .put("columns", strs(columns))
                        .put("references", r.build())
                }
                _ => {
                    let line = self.items[i].line;
                    self.note(line, NoteKind::Warning, format!("a table constraint of {table} pgbaton's create_table cannot express (EXCLUDE): add it with a sql operation"));
                    continue;
                }
            };
            cons.push(v.build());
        }
        let mut body = MapBuilder::new()
            .s("name", table)
            .put("columns", V::List(cols));
        if !cons.is_empty() {
            body = body.put("constraints", V::List(cons));
        }
        self.operations.push(op("create_table", body.build()));
    }

    #[allow(clippy::too_many_arguments)]
    fn create_index(
        &mut self,
        i: usize,
        name: &str,
        table: &str,
        keys: &[IndexKey],
        unique: bool,
        method: &str,
        predicate: Option<&str>,
    ) {
        let mut cols = Vec::new();
        for k in keys {
            match k {
                IndexKey::Column {
                    name,
                    desc,
                    nulls_first,
                } => {
                    let mut f = MapBuilder::new().s("column", name);
                    if *desc {
                        f = f.s("sort", "DESC");
                    }
                    if let Some(first) = nulls_first {
                        f = f.s("nulls", if *first { "FIRST" } else { "LAST" });
                    }
                    cols.push(f.build());
                }
                IndexKey::Expr(_) => {
                    self.raw_sql(i, "an index on an expression: pgroll's create_index takes columns only; kept as written (add CONCURRENTLY to build it without blocking writes)");
                    return;
                }
            }
        }
        let mut body = MapBuilder::new()
            .s("name", name)
            .s("table", table)
            .put("columns", V::List(cols));
        if !method.is_empty() && method != "btree" {
            body = body.s("method", method);
        }
        body = body.flag("unique", unique).opt("predicate", predicate);
        self.operations.push(op("create_index", body.build()));
    }

    /// A `DROP COLUMN a` and an `ADD COLUMN b` on one table in one file: the habit of tools
    /// that cannot tell a rename (Prisma, Drizzle). Reported as data loss.
    fn renames_that_lose_data(&mut self) {
        let mut found = Vec::new();
        for (i, d) in self.items.iter().enumerate() {
            let Change::DropColumn { table, column } = &d.change else {
                continue;
            };
            for a in &self.items[i + 1..] {
                if let Change::AddColumn {
                    table: t,
                    column: c,
                } = &a.change
                {
                    if t == table {
                        found.push((
                            d.line,
                            a.line,
                            table.clone(),
                            column.clone(),
                            c.name.clone(),
                        ));
                    }
                }
            }
        }
        for (l1, l2, table, from, to) in found {
            self.note(l1, NoteKind::DataLoss, format!(
                "DROP COLUMN {table}.{from} (line {l1}) and ADD COLUMN {table}.{to} (line {l2}): every value of {from} is lost. If this is a rename, replace both with:\n#   - rename_column:\n#       table: {table}\n#       from: {from}\n#       to: {to}"
            ));
        }
    }
}

fn strs(v: &[String]) -> V {
    V::List(v.iter().map(|s| V::Str(s.clone())).collect())
}

/// A column name as an SQL identifier: plain when it needs no quotes, else quoted.
fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && crate::sql::significant(name).is_ok_and(|t| t.len() == 1 && !t[0].keyword);
    if plain {
        name.to_string()
    } else {
        crate::ident::quote_ident(name)
    }
}

/// True when `filter` (deparsed) is `column IS NULL`.
fn is_null_test(filter: &str, column: &str) -> bool {
    let f = filter.trim();
    f == format!("{} IS NULL", ident(column)) || f == format!("{column} IS NULL")
}

/// The columns an expression references (unqualified or qualified), in order, once each.
fn referenced_columns(expr: &str) -> Vec<String> {
    let Ok(e) = crate::sql::parse_expr(expr) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for r in crate::sql::column_refs(&e.json()) {
        if let Some(c) = r.column() {
            if !out.iter().any(|x| x == c) {
                out.push(c.to_string());
            }
        }
    }
    out
}

/// A column definition in pgroll's form.
fn column_value(table: &str, c: &ColumnSpec) -> V {
    let mut b = MapBuilder::new().s("name", &c.name).s("type", &c.type_);
    // pgroll's default is NOT NULL: say nullable explicitly.
    if !c.not_null && !c.primary_key {
        b = b.put("nullable", V::Bool(true));
    }
    b = b
        .flag("pk", c.primary_key)
        .flag("unique", c.unique)
        .opt("default", c.default.clone());
    if let Some(check) = &c.check {
        b = b.put(
            "check",
            MapBuilder::new()
                .s("name", format!("{table}_{}_check", c.name))
                .s("constraint", check)
                .build(),
        );
    }
    if let Some((rt, rc)) = &c.references {
        b = b.put(
            "references",
            MapBuilder::new()
                .s("name", format!("{table}_{}_fkey", c.name))
                .s("table", rt)
                .s("column", rc.clone().unwrap_or_else(|| "id".into()))
                .opt(
                    "on_delete",
                    Some(c.references_actions.0.clone())
                        .filter(|a| a != "NO ACTION" && !a.is_empty()),
                )
                .opt(
                    "on_update",
                    Some(c.references_actions.1.clone())
                        .filter(|a| a != "NO ACTION" && !a.is_empty()),
                )
                .build(),
        );
    }
    if let Some(g) = &c.generated {
        b = b.put("generated", MapBuilder::new().s("expression", g).build());
    } else if c.identity {
        b = b.put(
            "generated",
            MapBuilder::new()
                .put("identity", MapBuilder::new().build())
                .build(),
        );
    }
    b.build()
}
