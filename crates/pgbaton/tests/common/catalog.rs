//! A schema's definition read from the catalogs, for "schema identical before/after" checks on
//! every PostgreSQL major: `pg_dump` refuses a server newer than itself, and the server packages
//! of other majors ship no client programs. One sorted line per object or column, with what
//! `pg_dump --schema-only` would show of it (definitions through the server's own `pg_get_*def`
//! functions, owners, privileges, comments, options, replica identity, ...), and without what
//! varies while the definition does not (OIDs, the `attnum` gaps a dropped column leaves).
//! Names are rendered with an empty `search_path`, so every reference is schema-qualified.

use tokio_postgres::Client;

/// Each query takes the schema name as `$1` and returns one text column, one line per row.
const QUERIES: &[(&str, &str)] = &[
    (
        "schema",
        "SELECT format('schema %I owner=%s acl=%s comment=%s', n.nspname,
                pg_get_userbyid(n.nspowner), coalesce(n.nspacl::text, ''),
                coalesce(obj_description(n.oid, 'pg_namespace'), ''))
         FROM pg_namespace n WHERE n.nspname = $1",
    ),
    (
        "default privileges",
        "SELECT format('default-acl role=%s objtype=%s acl=%s', pg_get_userbyid(d.defaclrole),
                d.defaclobjtype, d.defaclacl::text)
         FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
         WHERE n.nspname = $1",
    ),
    (
        "relations",
        "SELECT format('relation %I kind=%s persistence=%s owner=%s am=%s tablespace=%s \
                replident=%s options=%s acl=%s rls=%s/%s partkey=%s partbound=%s parents=%s \
                comment=%s',
                c.relname, c.relkind, c.relpersistence, pg_get_userbyid(c.relowner),
                coalesce(am.amname, ''), coalesce(ts.spcname, ''), c.relreplident,
                coalesce(c.reloptions::text, ''), coalesce(c.relacl::text, ''),
                c.relrowsecurity, c.relforcerowsecurity,
                CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) ELSE '' END,
                coalesce(pg_get_expr(c.relpartbound, c.oid), ''),
                coalesce((SELECT string_agg(format('%I.%I', pn.nspname, p.relname), ','
                                            ORDER BY i.inhseqno)
                          FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                          JOIN pg_namespace pn ON pn.oid = p.relnamespace
                          WHERE i.inhrelid = c.oid), ''),
                coalesce(obj_description(c.oid, 'pg_class'), ''))
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_am am ON am.oid = c.relam
         LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
         WHERE n.nspname = $1",
    ),
    (
        "columns",
        // The position among the live columns (what pg_dump's column order shows), not attnum.
        "SELECT format('%s %I #%s %I type=%s notnull=%s default=%s identity=%s \
                generated=%s collation=%s storage=%s compression=%s stattarget=%s options=%s \
                fdwoptions=%s acl=%s comment=%s',
                CASE WHEN c.relkind IN ('i', 'I') THEN 'index-column' ELSE 'column' END,
                c.relname, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
                format_type(a.atttypid, a.atttypmod), a.attnotnull,
                coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity, a.attgenerated,
                CASE WHEN a.attcollation <> t.typcollation
                     THEN (SELECT format('%I.%I', cn.nspname, co.collname)
                           FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                           WHERE co.oid = a.attcollation)
                     ELSE '' END,
                a.attstorage, a.attcompression, coalesce(a.attstattarget::text, ''),
                coalesce(a.attoptions::text, ''), coalesce(a.attfdwoptions::text, ''),
                coalesce(a.attacl::text, ''), coalesce(col_description(c.oid, a.attnum), ''))
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped",
    ),
    (
        "constraints",
        "SELECT format('constraint %s %I type=%s def=%s local=%s inherited=%s comment=%s',
                coalesce((SELECT format('%I', c.relname) FROM pg_class c WHERE c.oid = k.conrelid),
                         (SELECT format('type %I', t.typname) FROM pg_type t
                          WHERE t.oid = k.contypid), ''),
                k.conname, k.contype, pg_get_constraintdef(k.oid), k.conislocal, k.coninhcount,
                coalesce(obj_description(k.oid, 'pg_constraint'), ''))
         FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
         WHERE n.nspname = $1",
    ),
    (
        "indexes",
        "SELECT format('index %I def=%s valid=%s clustered=%s replident=%s',
                i.relname, pg_get_indexdef(x.indexrelid), x.indisvalid, x.indisclustered,
                x.indisreplident)
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_namespace n ON n.oid = i.relnamespace
         WHERE n.nspname = $1",
    ),
    (
        "triggers",
        "SELECT format('trigger %I.%I def=%s enabled=%s comment=%s', c.relname, t.tgname,
                pg_get_triggerdef(t.oid, false), t.tgenabled,
                coalesce(obj_description(t.oid, 'pg_trigger'), ''))
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND NOT t.tgisinternal",
    ),
    (
        "rules and views",
        "SELECT format('rule %I.%I def=%s enabled=%s', c.relname, r.rulename,
                CASE WHEN r.rulename = '_RETURN' THEN pg_get_viewdef(c.oid)
                     ELSE pg_get_ruledef(r.oid) END,
                r.ev_enabled)
         FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1",
    ),
    (
        "sequences",
        "SELECT format('sequence %I type=%s start=%s increment=%s min=%s max=%s cache=%s \
                cycle=%s owned-by=%s',
                c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
                s.seqmax, s.seqcache, s.seqcycle,
                coalesce((SELECT format('%I.%I/%s', tc.relname, ta.attname, d.deptype)
                          FROM pg_depend d JOIN pg_class tc ON tc.oid = d.refobjid
                          JOIN pg_attribute ta ON ta.attrelid = d.refobjid
                                               AND ta.attnum = d.refobjsubid
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                            AND d.refclassid = 'pg_class'::regclass
                            AND d.deptype IN ('a', 'i')), ''))
         FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1",
    ),
    (
        "functions",
        "SELECT format('function %s owner=%s acl=%s comment=%s def=%s', p.oid::regprocedure,
                pg_get_userbyid(p.proowner), coalesce(p.proacl::text, ''),
                coalesce(obj_description(p.oid, 'pg_proc'), ''),
                CASE WHEN p.prokind = 'a'
                     THEN (SELECT format('aggregate transfn=%s transtype=%s finalfn=%s init=%s',
                                         a.aggtransfn, format_type(a.aggtranstype, NULL),
                                         a.aggfinalfn, a.agginitval)
                           FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
                     ELSE pg_get_functiondef(p.oid) END)
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = $1",
    ),
    (
        "types",
        // Not the row types of tables and views (their columns are listed) nor array types.
        "SELECT format('type %I kind=%s owner=%s acl=%s comment=%s base=%s notnull=%s \
                default=%s labels=%s range-of=%s',
                t.typname, t.typtype, pg_get_userbyid(t.typowner), coalesce(t.typacl::text, ''),
                coalesce(obj_description(t.oid, 'pg_type'), ''),
                CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
                     ELSE '' END,
                t.typnotnull, coalesce(t.typdefault, ''),
                coalesce((SELECT string_agg(format('%L', e.enumlabel), ','
                                            ORDER BY e.enumsortorder)
                          FROM pg_enum e WHERE e.enumtypid = t.oid), ''),
                coalesce((SELECT format_type(r.rngsubtype, NULL) FROM pg_range r
                          WHERE r.rngtypid = t.oid), ''))
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = $1
           AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
           AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)",
    ),
    (
        "policies",
        "SELECT format('policy %I.%I cmd=%s permissive=%s roles=%s using=%s check=%s',
                c.relname, p.polname, p.polcmd, p.polpermissive,
                (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END, ','
                                   ORDER BY 1)
                 FROM unnest(p.polroles) r),
                coalesce(pg_get_expr(p.polqual, p.polrelid), ''),
                coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''))
         FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1",
    ),
    (
        "statistics objects",
        "SELECT format('statistics %I def=%s', s.stxname, pg_get_statisticsobjdef(s.oid))
         FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
         WHERE n.nspname = $1",
    ),
    (
        "other objects",
        // Whatever else lives in the schema, by identity.
        "SELECT 'object ' || (pg_identify_object(o.classid, o.objid, 0)).identity
         FROM (SELECT 'pg_collation'::regclass AS classid, oid AS objid, collnamespace AS ns
               FROM pg_collation
               UNION ALL SELECT 'pg_conversion'::regclass, oid, connamespace FROM pg_conversion
               UNION ALL SELECT 'pg_operator'::regclass, oid, oprnamespace FROM pg_operator
               UNION ALL SELECT 'pg_opclass'::regclass, oid, opcnamespace FROM pg_opclass
               UNION ALL SELECT 'pg_opfamily'::regclass, oid, opfnamespace FROM pg_opfamily
               UNION ALL SELECT 'pg_ts_config'::regclass, oid, cfgnamespace FROM pg_ts_config
               UNION ALL SELECT 'pg_ts_dict'::regclass, oid, dictnamespace FROM pg_ts_dict
               UNION ALL SELECT 'pg_ts_parser'::regclass, oid, prsnamespace FROM pg_ts_parser
               UNION ALL SELECT 'pg_ts_template'::regclass, oid, tmplnamespace
                         FROM pg_ts_template
               UNION ALL SELECT 'pg_extension'::regclass, oid, extnamespace FROM pg_extension
              ) o JOIN pg_namespace n ON n.oid = o.ns
         WHERE n.nspname = $1",
    ),
];

/// The catalog snapshot of `schema` (see the module comment), and the server's major version.
/// Panics when the schema does not exist (as `pg_dump --schema` fails on one that matches
/// nothing).
pub async fn snapshot(client: &Client, schema: &str) -> (String, u32) {
    client
        .batch_execute("SET search_path = ''")
        .await
        .unwrap_or_else(|e| panic!("{}", super::describe(&e)));
    let num: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap_or_else(|e| panic!("{}", super::describe(&e)))
        .get(0);
    let major = num.parse::<u32>().expect("server_version_num") / 10000;
    let mut lines: Vec<String> = Vec::new();
    for (what, sql) in QUERIES {
        let rows = client
            .query(*sql, &[&schema])
            .await
            .unwrap_or_else(|e| panic!("catalog snapshot ({what}): {}", super::describe(&e)));
        if *what == "schema" {
            assert!(!rows.is_empty(), "schema {schema} does not exist");
        }
        lines.extend(rows.iter().map(|row| row.get::<_, String>(0)));
    }
    lines.sort();
    (lines.join("\n"), major)
}
