//! A throwaway PostgreSQL cluster run from the installed binaries (`initdb`, `pg_ctl`).
//!
//! Used by `ordinaut dev` (data under `./.ordinaut/`) and by the tests (one cluster per
//! run under `target/`). It must never touch a cluster it did not create. Postgres
//! refuses to run as root, so as root the cluster runs as the unprivileged `nobody`; when
//! `nobody` cannot reach the requested directory (root's home is mode 0700), the cluster
//! lives under `/var/tmp/ordinaut-pg-<hash of the requested path>` instead.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a local cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PgLocalError {
    /// No PostgreSQL binaries were found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin; \
         install PostgreSQL (e.g. `apt-get install postgresql`) or set DATABASE_URL to an existing database"
    )]
    NotInstalled,
    /// A command failed.
    #[error("{step} failed: {detail}")]
    Command { step: &'static str, detail: String },
    /// Filesystem trouble.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// uid/gid of `nobody`, the user the cluster runs as when we are root.
const NOBODY: u32 = 65534;

/// Options for [`LocalPg::start`].
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Trade durability for speed (tests): fsync, synchronous_commit and
    /// full_page_writes off.
    pub unsafe_fast: bool,
    /// Server max_connections.
    pub max_connections: u32,
    /// Record commit timestamps (`track_commit_timestamp`): the workflows bench times
    /// activation from the commit of the finish that made a step claimable.
    pub commit_timestamps: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            unsafe_fast: false,
            max_connections: 200,
            commit_timestamps: false,
        }
    }
}

/// A running local cluster.
#[derive(Debug, Clone)]
pub struct LocalPg {
    base: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl LocalPg {
    /// Starts (initialising if needed) the cluster under `base` (`base/data`, log in
    /// `base/postgres.log`), or reuses it if it already runs.
    ///
    /// As root, when `nobody` cannot traverse to `base`, the cluster goes to
    /// [`reachable_base`]'s directory instead (logged); [`LocalPg::base`] says where.
    pub fn start(base: &Path, options: &StartOptions) -> Result<LocalPg, PgLocalError> {
        let bin = find_bin_dir().ok_or(PgLocalError::NotInstalled)?;
        fs::create_dir_all(base).map_err(|e| io(base, e))?;
        let mut base = base.canonicalize().map_err(|e| io(base, e))?;
        let as_root = is_root();
        if as_root {
            if let Err(blocked) = check_traversable(&base) {
                let moved = reachable_base(&base)?;
                tracing::info!(
                    requested = %base.display(),
                    blocked = %blocked.display(),
                    path = %moved.display(),
                    "local postgres data moved: the requested directory is not reachable by nobody"
                );
                base = moved;
            }
            chown_tree(&base)?;
        }
        let data = base.join("data");
        if !data.join("PG_VERSION").exists() {
            fs::create_dir_all(&data).map_err(|e| io(&data, e))?;
            fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
                .map_err(|e| io(&data, e))?;
            if as_root {
                chown_tree(&data)?;
            }
            run(
                command(&bin, "initdb", as_root).arg("-D").arg(&data).args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ]),
                "initdb",
            )?;
        }
        let pg = LocalPg {
            base: base.clone(),
            bin,
            port: 0,
        };
        if let Some(port) = pg.running_port() {
            return Ok(LocalPg { port, ..pg });
        }
        let port = free_port().map_err(|e| io(&base, e))?;
        let mut extra = format!(" -c max_connections={}", options.max_connections);
        if options.unsafe_fast {
            extra.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        if options.commit_timestamps {
            extra.push_str(" -c track_commit_timestamp=on");
        }
        let pg = LocalPg { port, ..pg };
        pg.start_server(&extra, "pg_ctl start")?;
        Ok(pg)
    }

    /// Port of a cluster already running from this data directory.
    fn running_port(&self) -> Option<u16> {
        let status = command(&self.bin, "pg_ctl", is_root())
            .arg("-D")
            .arg(self.base.join("data"))
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        // postmaster.pid: line 4 is the port.
        let pid_file = fs::read_to_string(self.base.join("data/postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    /// Directory holding the cluster (`data/`, `postgres.log`): the requested one, or
    /// its stand-in when root's `nobody` could not reach it.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// TCP port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of `database` as the superuser `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the cluster (fast shutdown: active sessions are disconnected).
    pub fn stop(&self) -> Result<(), PgLocalError> {
        run(
            self.pg_ctl().args(["-m", "fast", "-w", "stop"]),
            "pg_ctl stop",
        )
    }

    /// Stops the cluster at once, without a shutdown checkpoint (as a crash would).
    pub fn stop_immediate(&self) -> Result<(), PgLocalError> {
        run(
            self.pg_ctl().args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        )
    }

    /// Restarts the cluster on the same port (fast mode), as an operator or a failover would.
    pub fn restart(&self) -> Result<(), PgLocalError> {
        run(
            self.pg_ctl()
                .args(["-m", "fast", "-w", "-t", "60", "restart"]),
            "pg_ctl restart",
        )
    }

    /// Restarts the cluster with an explicit shutdown mode (`smart`, `fast` or
    /// `immediate`: the last skips the checkpoint, so the start replays WAL as after a
    /// crash).
    pub fn restart_mode(&self, mode: &str) -> Result<(), PgLocalError> {
        run(
            self.pg_ctl()
                .args(["-m", mode, "-w", "-t", "60", "restart"]),
            "pg_ctl restart",
        )
    }

    /// Creates (`pg_basebackup -R`) and starts a streaming standby of this cluster under
    /// `base`, on a port of its own (failover tests).
    pub fn start_standby(&self, base: &Path) -> Result<LocalPg, PgLocalError> {
        fs::create_dir_all(base).map_err(|e| io(base, e))?;
        let base = base.canonicalize().map_err(|e| io(base, e))?;
        let data = base.join("data");
        let as_root = is_root();
        if as_root {
            check_traversable(&base).map_err(|blocked| PgLocalError::Command {
                step: "standby setup",
                detail: format!("{} is not searchable by `nobody`", blocked.display()),
            })?;
            chown_tree(&base)?;
        }
        // PATH may hold only initdb and pg_ctl (wrappers); the server's own bin has the rest.
        let tools = if self.bin.join("pg_basebackup").is_file() {
            self.bin.clone()
        } else {
            versioned_bin_dir("pg_basebackup").ok_or(PgLocalError::NotInstalled)?
        };
        run(
            command(&tools, "pg_basebackup", as_root)
                .arg("-D")
                .arg(&data)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-R", "-X", "stream", "-c", "fast"]),
            "pg_basebackup",
        )?;
        let port = free_port().map_err(|e| io(&base, e))?;
        let standby = LocalPg {
            base,
            bin: self.bin.clone(),
            port,
        };
        standby.start_server("", "pg_ctl start (standby)")?;
        Ok(standby)
    }

    /// Promotes a standby to primary and waits until it accepts writes.
    pub fn promote(&self) -> Result<(), PgLocalError> {
        run(
            self.pg_ctl().args(["-w", "-t", "60", "promote"]),
            "pg_ctl promote",
        )
    }

    /// `pg_ctl start`s the server of this data directory on this port, listening on
    /// 127.0.0.1 and on a socket in the data directory, with `extra` server options.
    fn start_server(&self, extra: &str, step: &'static str) -> Result<(), PgLocalError> {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}{extra}",
            self.port,
            self.base.join("data").display()
        );
        run(
            self.pg_ctl().args(["-o", &opts, "-w", "-t", "60", "start"]),
            step,
        )
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = command(&self.bin, "pg_ctl", is_root());
        cmd.arg("-D")
            .arg(self.base.join("data"))
            .arg("-l")
            .arg(self.base.join("postgres.log"));
        cmd
    }
}

/// Directory holding `initdb` and `pg_ctl`: PATH first, then the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    versioned_bin_dir("initdb")
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `tool`.
fn versioned_bin_dir(tool: &str) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join(tool).is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn command(bin: &Path, name: &str, as_root: bool) -> Command {
    let mut cmd = Command::new(bin.join(name));
    if as_root {
        cmd.uid(NOBODY).gid(NOBODY);
        // HOME of root is not readable by nobody; tools only need a directory. The
        // caller's working directory may not be reachable either: every path is absolute.
        cmd.env("HOME", "/tmp").current_dir("/");
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command, step: &'static str) -> Result<(), PgLocalError> {
    let output = cmd.output().map_err(|e| PgLocalError::Command {
        step,
        detail: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    Err(PgLocalError::Command {
        step,
        detail: detail.lines().last().unwrap_or("no output").to_owned(),
    })
}

fn chown_tree(path: &Path) -> Result<(), PgLocalError> {
    // Another process (a test, a second `dev`) may be using this cluster right now:
    // files Postgres creates and removes meanwhile are its own already, and one that
    // vanished while we walked is no error.
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    match chown(path, Some(NOBODY), Some(NOBODY)) {
        Err(e) if gone(&e) => return Ok(()),
        r => r.map_err(|e| io(path, e))?,
    }
    // An initialised data directory belongs to the server already (initdb ran as it).
    if path.join("PG_VERSION").is_file() {
        return Ok(());
    }
    if path.is_dir() {
        let entries = match fs::read_dir(path) {
            Err(e) if gone(&e) => return Ok(()),
            r => r.map_err(|e| io(path, e))?,
        };
        for entry in entries {
            let entry = match entry {
                Err(e) if gone(&e) => continue,
                r => r.map_err(|e| io(path, e))?,
            };
            match entry.file_type() {
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(io(path, e)),
                Ok(t) if t.is_symlink() => {}
                Ok(_) => chown_tree(&entry.path())?,
            }
        }
    }
    Ok(())
}

/// As root the cluster runs as `nobody`, which needs search permission on every parent;
/// the error is the first directory that denies it.
fn check_traversable(base: &Path) -> Result<(), PathBuf> {
    for dir in base.ancestors().skip(1) {
        // An unreadable parent counts as blocking: we cannot show nobody gets through.
        let searchable = fs::metadata(dir)
            .map(|m| traversable_by_nobody(&m))
            .unwrap_or(false);
        if !searchable {
            return Err(dir.to_path_buf());
        }
    }
    Ok(())
}

/// Whether `nobody` (in no group of the owner) may search the directory.
fn traversable_by_nobody(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    match (meta.uid(), meta.gid()) {
        (NOBODY, _) => mode & 0o100 != 0,
        (_, NOBODY) => mode & 0o010 != 0,
        _ => mode & 0o001 != 0,
    }
}

/// The stand-in for a `base` that `nobody` cannot reach: a directory per requested path
/// under `/var/tmp` (kept across reboots, unlike `/tmp`), else the system temp dir. The
/// name is a hash of `base`, so a restart finds the same data. A directory of that name
/// made by another user, or a symlink, is refused rather than trusted.
pub fn reachable_base(base: &Path) -> Result<PathBuf, PgLocalError> {
    use std::os::unix::fs::MetadataExt;
    let mut h: u64 = 0xcbf29ce484222325;
    for b in base.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let name = format!("ordinaut-pg-{h:016x}");
    let parent = [PathBuf::from("/var/tmp"), std::env::temp_dir()]
        .into_iter()
        .find(|p| p.is_dir() && check_traversable(&p.join("x")).is_ok())
        .ok_or_else(|| PgLocalError::Command {
            step: "local PostgreSQL setup",
            detail: format!(
                "{} is not reachable by `nobody` (as root the local cluster runs as nobody), \
                 and neither /var/tmp nor the temp directory is: set DATABASE_URL",
                base.display()
            ),
        })?;
    let dir = parent.join(name);
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() && (m.uid() == 0 || m.uid() == NOBODY) => {}
        Ok(_) => {
            return Err(PgLocalError::Command {
                step: "local PostgreSQL setup",
                detail: format!(
                    "{} exists but is not a directory owned by root or nobody; remove it or set DATABASE_URL",
                    dir.display()
                ),
            });
        }
        Err(_) => {
            fs::create_dir(&dir).map_err(|e| io(&dir, e))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| io(&dir, e))?;
        }
    }
    Ok(dir)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn io(path: &Path, source: std::io::Error) -> PgLocalError {
    PgLocalError::Io {
        path: path.display().to_string(),
        source,
    }
}
