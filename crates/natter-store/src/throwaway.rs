//! A PostgreSQL server of one's own, for tests: `initdb` and `pg_ctl` in a temporary
//! directory, reached through a Unix socket only, run as an unprivileged user (`nobody`)
//! when the caller is root, as PostgreSQL insists.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A running throwaway server; stopped and deleted when dropped, or when the process that
/// started it ends.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    as_nobody: bool,
    databases: AtomicU64,
}

/// The user every throwaway server's databases belong to.
const USER: &str = "natter";

impl Postgres {
    /// One server for the whole test process, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| {
            Postgres::start().unwrap_or_else(|e| {
                panic!(
                    "cannot start a throwaway PostgreSQL ({e}); install Debian's postgresql \
                     package (scripts/test.sh does)"
                )
            })
        })
    }

    /// Starts a new server in a fresh temporary directory.
    pub fn start() -> io::Result<Postgres> {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let bin = binaries()?;
        let as_nobody = std::fs::metadata("/proc/self")?.uid() == 0;
        let dir = std::env::temp_dir().join(format!(
            "natter-pg-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if as_nobody {
            let nobody = nobody()?;
            std::os::unix::fs::chown(&dir, Some(nobody.0), Some(nobody.1))?;
        }
        let pg = Postgres {
            dir,
            bin,
            as_nobody,
            databases: AtomicU64::new(0),
        };
        pg.watch()?;
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                pg.data().as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "--auth=trust".as_ref(),
                "--no-locale".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        pg.resume()?;
        Ok(pg)
    }

    /// Starts the server again after [`Postgres::stop`].
    pub fn resume(&self) -> io::Result<()> {
        let pg = self;
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c full_page_writes=off",
            pg.dir.display()
        );
        pg.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                pg.data().as_os_str(),
                "-l".as_ref(),
                pg.dir.join("log").as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        )
    }

    /// Creates an empty database of its own and returns its `postgres://` URL.
    pub fn database(&self) -> io::Result<String> {
        let name = format!("natter_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        self.run(
            "createdb",
            &[
                "-h".as_ref(),
                self.dir.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                name.as_ref(),
            ],
        )?;
        Ok(self.url(&name))
    }

    /// The URL of a database on this server.
    pub fn url(&self, database: &str) -> String {
        let socket_dir = self.dir.display().to_string().replace('/', "%2F");
        format!("postgres://{USER}@{socket_dir}/{database}")
    }

    /// Stops the server now, as a crash would (`immediate`).
    pub fn stop(&self) -> io::Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data().as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "stop".as_ref(),
            ],
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> io::Result<()> {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        Err(io::Error::other(format!(
            "{program} failed: {}{}{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }

    /// Leaves a shell behind that stops the server and deletes its directory once this
    /// process has ended, however it ends (a test process is often killed, and a static
    /// is never dropped). It checks once a second; nothing waits on it.
    fn watch(&self) -> io::Result<()> {
        let stop = self.command("pg_ctl");
        let mut words = vec![stop.get_program().to_owned()];
        words.extend(stop.get_args().map(|a| a.to_owned()));
        Command::new("sh")
            .arg("-c")
            .arg(
                r#"pid=$1 dir=$2; shift 2
                   while kill -0 "$pid" 2>/dev/null; do sleep 1; done
                   [ -d "$dir/data" ] && "$@" -D "$dir/data" -m immediate stop >/dev/null 2>&1
                   rm -rf "$dir""#,
            )
            .arg("natter-pg-watch")
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .args(words)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory holding `initdb`, `pg_ctl` and `createdb`: where the `initdb` on the
/// `PATH` really is, or Debian's newest `/usr/lib/postgresql/N/bin`.
fn binaries() -> io::Result<PathBuf> {
    let complete = |d: &PathBuf| {
        ["initdb", "pg_ctl", "createdb"]
            .iter()
            .all(|p| d.join(p).is_file())
    };
    if let Some(dir) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .filter_map(|d| std::fs::canonicalize(d.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(PathBuf::from))
        .find(complete)
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| io::Error::other("no initdb under /usr/lib/postgresql"))
}

/// `nobody`'s user and group ids.
fn nobody() -> io::Result<(u32, u32)> {
    let id = |flag: &str| -> io::Result<u32> {
        let out = Command::new("id").args([flag, "nobody"]).output()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| io::Error::other("no user nobody"))
    };
    Ok((id("-u")?, id("-g")?))
}
