//! Jobs that record their own executions, for judging Ordinaut from outside.
//!
//! Each job is a `command` kind (bash) that appends a line when it starts and another
//! when it ends, and holds an exclusive `flock` on a per-job file while it runs, so a
//! second execution of the same job that starts while the first is still alive is
//! written to `overlaps`. Nothing in the counting depends on Ordinaut's own tables.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// Seconds since the Unix epoch, as bash's `$EPOCHREALTIME` gives them.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The `rec` kind: payload `{"sleep": seconds, "out": "nul" | "big"}`, all optional.
/// Only bash builtins run while it waits, so the job is exactly one process: when it
/// dies its lock goes with it.
const RECORDING_SCRIPT: &str = r#"
read -r -d '' p || true
s=0
[[ $p =~ \"sleep\":([0-9.]+) ]] && s=${BASH_REMATCH[1]}
exec 9>"$REC_DIR/locks/$ORDINAUT_JOB_ID"
flock -n 9 || echo "$ORDINAUT_JOB_ID $ORDINAUT_ATTEMPT $EPOCHREALTIME" >> "$REC_DIR/overlaps"
echo "$ORDINAUT_JOB_ID $ORDINAUT_ATTEMPT $PPID $EPOCHREALTIME" >> "$REC_DIR/starts"
if [[ $s != 0 ]]; then exec 8<>"$REC_DIR/fifo"; read -r -t "$s" -u 8 _ || true; fi
case $p in
  *'"out":"nul"'*) printf 'x\0y' ;;
  *'"out":"big"'*) head -c 10000000 /dev/zero | tr '\0' a ;;
esac
echo "$ORDINAUT_JOB_ID $ORDINAUT_ATTEMPT $EPOCHREALTIME" >> "$REC_DIR/ends"
"#;

/// A working directory with an `ordinaut.toml` declaring the recording `rec` kind
/// (plus `extra` TOML), and the files its jobs write.
pub struct Recorder {
    /// The directory processes run in.
    pub dir: PathBuf,
}

impl Recorder {
    /// A fresh directory under the target's temp dir (traversable by `nobody`).
    pub fn new(name: &str, extra: &str) -> Recorder {
        let dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", Uuid::now_v7()));
        std::fs::create_dir_all(dir.join("locks")).expect("create recorder dir");
        let fifo = dir.join("fifo");
        let status = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo failed");
        let config = format!(
            "[kinds.rec]\ntype = \"command\"\nprogram = \"bash\"\nargs = [\"-c\", {script}]\n\
             env = {{ REC_DIR = {dir} }}\n{extra}\n",
            script = toml_string(RECORDING_SCRIPT),
            dir = toml_string(&dir.display().to_string()),
        );
        std::fs::write(dir.join("ordinaut.toml"), config).expect("write ordinaut.toml");
        Recorder { dir }
    }

    fn lines(&self, file: &str) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect()
    }

    /// Every execution that started, in order.
    pub fn starts(&self) -> Vec<Execution> {
        self.lines("starts")
            .into_iter()
            .filter_map(|f| {
                Some(Execution {
                    job: f.first()?.parse().ok()?,
                    attempt: f.get(1)?.parse().ok()?,
                    worker_pid: f.get(2)?.parse().ok()?,
                    at: f.get(3)?.parse().ok()?,
                })
            })
            .collect()
    }

    /// Executions that ran to their end line: (job, attempt).
    pub fn ends(&self) -> Vec<(Uuid, i32)> {
        self.lines("ends")
            .into_iter()
            .filter_map(|f| Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?)))
            .collect()
    }

    /// Executions that ran to their end line, with the time: (job, attempt, epoch seconds).
    pub fn ends_at(&self) -> Vec<(Uuid, i32, f64)> {
        self.lines("ends")
            .into_iter()
            .filter_map(|f| {
                Some((
                    f.first()?.parse().ok()?,
                    f.get(1)?.parse().ok()?,
                    f.get(2)?.parse().ok()?,
                ))
            })
            .collect()
    }

    /// Executions that started while another execution of the same job was alive.
    pub fn overlaps(&self) -> Vec<String> {
        self.lines("overlaps")
            .into_iter()
            .map(|f| f.join(" "))
            .collect()
    }

    /// Counts by job: how many times each one started.
    pub fn executions_by_job(&self) -> HashMap<Uuid, usize> {
        let mut by = HashMap::new();
        for e in self.starts() {
            *by.entry(e.job).or_default() += 1;
        }
        by
    }
}

/// One start line of a recorded job.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Job id.
    pub job: Uuid,
    /// Attempt number Ordinaut gave it.
    pub attempt: i32,
    /// Pid of the worker process that ran it.
    pub worker_pid: i32,
    /// Epoch seconds it started.
    pub at: f64,
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}
