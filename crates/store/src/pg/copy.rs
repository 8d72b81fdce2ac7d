//! Moving an embedded store to PostgreSQL: every row of every table copied as it is (sealed
//! seeds and secrets stay sealed under the same data keys, the audit chain keeps its MACs), in
//! one PostgreSQL transaction, into a database that holds no okey data yet.

use std::path::Path;

use rusqlite::types::ValueRef;
use tokio_postgres::types::{ToSql, Type};

use super::backend::migrate_async;
use super::conn::{Driver, parse_target, wait};
use crate::StoreError;
use crate::sqlite::{DB_FILE, Sqlite};

/// Tables that others refer to, copied first (the rest follow by name).
const FIRST: [&str; 5] = ["data_keys", "secrets", "tokens", "token_state", "lots"];

/// How many rows each table held, in the order they were copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// `(table, rows)`.
    pub tables: Vec<(String, u64)>,
}

impl CopyReport {
    /// Rows copied in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.1).sum()
    }
}

use crate::backend::quote_ident as quote;

fn mismatch(table: &str, why: String) -> StoreError {
    StoreError::Corrupt(format!(
        "table {table} differs between the SQLite and the PostgreSQL schema: {why}"
    ))
}

/// Copy the store in `dir` (SQLite; locked for the whole copy, so no okey may be running on
/// it) into the PostgreSQL database `url`, migrating both to this build's schema first.
/// `progress(table, copied, total)` is called as rows go. Refused, with nothing written, when
/// the target already holds any okey row.
pub fn copy_sqlite_to_postgres(
    dir: &Path,
    url: &str,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<CopyReport, StoreError> {
    // Opening takes the directory's lock and brings the schema up to date.
    let _source = Sqlite::open(dir)?;
    let src = rusqlite::Connection::open_with_flags(
        dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    src.execute_batch("BEGIN")?;
    let mut tables: Vec<String> = {
        let mut stmt = src.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )?;
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?
    };
    tables.sort_by_key(|t| FIRST.iter().position(|f| f == t).unwrap_or(FIRST.len()));

    let target = parse_target(url)?;
    let driver = Driver::start()?;
    let conn = driver.connect(&target)?;
    let pg = &conn.client;
    wait(migrate_async(pg))?;
    for t in &tables {
        let n: i64 = wait(pg.query_one(&format!("SELECT count(*) FROM {}", quote(t)), &[]))
            .map_err(|e| mismatch(t, e.to_string()))?
            .try_get(0)?;
        if n > 0 {
            return Err(StoreError::Precondition(format!(
                "the PostgreSQL database already holds okey data ({n} rows in {t}); a store is \
                 moved only into an empty database, and only once"
            )));
        }
    }

    wait(pg.batch_execute("BEGIN"))?;
    let result = (|| {
        let mut report = CopyReport::default();
        for t in &tables {
            let n = copy_table(&src, pg, t, progress)?;
            report.tables.push((t.clone(), n));
        }
        // Identity columns continue after the copied ids.
        for r in wait(pg.query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
            &[],
        ))? {
            let (t, c): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            wait(pg.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max({c}), 0) + 1, \
                     false) FROM {t}",
                    c = quote(&c),
                    t = quote(&t)
                ),
                &[&t, &c],
            ))?;
        }
        Ok::<_, StoreError>(report)
    })();
    match result {
        Ok(report) => {
            wait(pg.batch_execute("COMMIT"))?;
            src.execute_batch("COMMIT")?;
            Ok(report)
        }
        Err(e) => {
            let _ = wait(pg.batch_execute("ROLLBACK"));
            Err(e)
        }
    }
}

fn copy_table(
    src: &rusqlite::Connection,
    pg: &tokio_postgres::Client,
    table: &str,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<u64, StoreError> {
    let pg_cols: Vec<String> = wait(pg.query(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    ))?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    if pg_cols.is_empty() {
        return Err(mismatch(table, "missing in PostgreSQL".into()));
    }
    let sqlite_cols: Vec<String> = {
        let mut stmt = src.prepare(&format!("SELECT name FROM pragma_table_info({})", {
            format!("'{}'", table.replace('\'', "''"))
        }))?;
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?
    };
    let mut a = pg_cols.clone();
    let mut b = sqlite_cols.clone();
    a.sort();
    b.sort();
    if a != b {
        return Err(mismatch(
            table,
            format!("columns {sqlite_cols:?} in SQLite, {pg_cols:?} in PostgreSQL"),
        ));
    }
    let list = pg_cols
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let marks = (1..=pg_cols.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = wait(pg.prepare(&format!(
        "INSERT INTO {} ({list}) VALUES ({marks})",
        quote(table)
    )))?;
    let types: Vec<Type> = insert.params().to_vec();
    let total: i64 = src.query_row(&format!("SELECT count(*) FROM {}", quote(table)), [], |r| {
        r.get(0)
    })?;
    let total = u64::try_from(total).unwrap_or(0);
    progress(table, 0, total);
    let mut stmt = src.prepare(&format!("SELECT {list} FROM {}", quote(table)))?;
    let mut rows = stmt.query([])?;
    let mut copied = 0u64;
    while let Some(r) = rows.next()? {
        let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(types.len());
        for (i, ty) in types.iter().enumerate() {
            let v = r.get_ref(i)?;
            let bad = || mismatch(table, format!("column {} holds {v:?} for {ty}", pg_cols[i]));
            let boxed: Box<dyn ToSql + Sync> = match (ty, v) {
                (&Type::INT8, ValueRef::Integer(n)) => Box::new(Some(n)),
                (&Type::INT8, ValueRef::Null) => Box::new(None::<i64>),
                (&Type::BYTEA, ValueRef::Blob(b)) => Box::new(Some(b.to_vec())),
                (&Type::BYTEA, ValueRef::Null) => Box::new(None::<Vec<u8>>),
                (&Type::TEXT, ValueRef::Text(t)) => {
                    Box::new(Some(String::from_utf8(t.to_vec()).map_err(|_| bad())?))
                }
                (&Type::TEXT, ValueRef::Null) => Box::new(None::<String>),
                (&Type::BOOL, ValueRef::Integer(n)) => Box::new(Some(n != 0)),
                _ => return Err(bad()),
            };
            values.push(boxed);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
        wait(pg.execute(&insert, &refs))?;
        copied += 1;
        if copied.is_multiple_of(1000) {
            progress(table, copied, total);
        }
    }
    progress(table, copied, total);
    Ok(copied)
}
