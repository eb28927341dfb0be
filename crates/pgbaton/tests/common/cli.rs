//! The real binary against a test database, with a directory for migration files: for tests
//! that check exit codes and messages (`tests/hostile*.rs`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A database, a directory for migration files, and the binary pointed at both.
pub struct Cli {
    pub db: super::TestDb,
    pub dir: PathBuf,
}

impl Cli {
    pub async fn new(tag: &str) -> Cli {
        let db = super::fresh_db().await;
        let dir = std::env::temp_dir().join(format!(
            "pgbaton-hostile-{tag}-{}-{}",
            std::process::id(),
            db.name
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cli = Cli { db, dir };
        cli.expect(&["init"], 0);
        cli
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let Some(bin) = option_env!("CARGO_BIN_EXE_pgbaton") else {
            panic!("the pgbaton binary is only built for the pgbaton-cli crate's tests")
        };
        let mut c = Command::new(bin);
        c.args(args)
            .env("PGBATON_PG_URL", &self.db.url)
            .env_remove("DATABASE_URL")
            .env_remove("PGBATON_SCHEMA")
            .stdin(Stdio::null());
        c
    }

    /// Runs and asserts the exit code; returns stdout + stderr.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.command(args).output().expect("run pgbaton");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "pgbaton {args:?} exited {:?}:\n{text}",
            out.status.code()
        );
        text
    }

    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write migration");
        p.to_str().expect("utf-8 path").to_string()
    }

    pub async fn sql(&self, sql: &str) {
        super::exec(&self.db.client, sql).await;
    }

    pub async fn count(&self, sql: &str) -> i64 {
        super::scalar_i64(&self.db.client, sql).await
    }

    pub async fn victims_alive(&self) -> bool {
        self.count("SELECT count(*) FROM pg_class WHERE relname = 'victims'")
            .await
            == 1
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
