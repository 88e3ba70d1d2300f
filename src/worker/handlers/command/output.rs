//! What the program leaves: its stdout and stderr (bounded, for the attempt's log) and
//! the job's result (stdout as JSON or text, or the file `$ORDINAUT_OUTPUT_FILE`).

use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::JobContext;
use crate::kinds::CommandOutput;
use crate::model::truncate_output;

/// A private directory for the program's output file, removed when dropped.
pub(super) struct OutputDir(PathBuf);

impl OutputDir {
    pub(super) fn create(ctx: &JobContext) -> std::io::Result<OutputDir> {
        use std::os::unix::fs::DirBuilderExt;
        let suffix: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!(
            "ordinaut-{}-{}-{suffix:016x}",
            ctx.job.id, ctx.job.attempt
        ));
        // Mode 0700 and a fresh random name: nobody else can plant or read the file.
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(OutputDir(dir))
    }

    pub(super) fn file(&self) -> PathBuf {
        self.0.join("output.json")
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The job's output as the kind's `output` says; the error says why there is none.
pub(super) fn result(
    mode: CommandOutput,
    stdout: &[u8],
    stdout_total: usize,
    dir: Option<&OutputDir>,
    limit: usize,
) -> Result<Option<serde_json::Value>, String> {
    let too_big = |what: &str, n: usize| {
        format!(
            "its {what} ({n} bytes) exceeds the output limit of {limit} bytes (WORKER_OUTPUT_LIMIT_BYTES)"
        )
    };
    match mode {
        CommandOutput::None => Ok(None),
        CommandOutput::StdoutText => {
            if stdout_total > stdout.len() {
                return Err(too_big("stdout", stdout_total));
            }
            Ok(Some(serde_json::Value::String(
                String::from_utf8_lossy(stdout).into_owned(),
            )))
        }
        CommandOutput::StdoutJson => {
            if stdout_total > stdout.len() {
                return Err(too_big("stdout", stdout_total));
            }
            serde_json::from_slice(stdout)
                .map(Some)
                .map_err(|e| format!("its stdout is not JSON (output = \"stdout-json\"): {e}"))
        }
        CommandOutput::File => {
            let Some(dir) = dir else {
                return Ok(None);
            };
            let path = dir.file();
            let size = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => m.len() as usize,
                Ok(_) => return Err("$ORDINAUT_OUTPUT_FILE is not a regular file".to_owned()),
                Err(_) => return Err("it wrote no $ORDINAUT_OUTPUT_FILE".to_owned()),
            };
            if size > limit {
                return Err(too_big("output file", size));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("$ORDINAUT_OUTPUT_FILE cannot be read: {e}"))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("$ORDINAUT_OUTPUT_FILE is not JSON: {e}"))
        }
    }
}

/// Output of one pipe: the first `limit` bytes and how many there were in all.
#[derive(Default)]
pub(super) struct Captured {
    kept: Vec<u8>,
    pub(super) total: usize,
}

impl Captured {
    /// Reads `reader` to its end (or first error), keeping at most `limit` bytes. What
    /// was read stays in `self` when the future is dropped before the end.
    pub(super) async fn read_from<R: AsyncRead + Unpin>(
        &mut self,
        reader: Option<R>,
        limit: usize,
    ) {
        let Some(mut reader) = reader else {
            return;
        };
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.total += n;
                    let room = limit.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }

    pub(super) fn into_parts(self) -> (Vec<u8>, usize) {
        (self.kept, self.total)
    }
}

pub(super) fn format_log(
    stdout: &(Vec<u8>, usize),
    stderr: &(Vec<u8>, usize),
    limit: usize,
) -> String {
    let mut log = String::new();
    for (name, (bytes, total)) in [("stdout", stdout), ("stderr", stderr)] {
        if *total == 0 {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        log.push_str(&format!("--- {name} ---\n"));
        log.push_str(&truncate_output(&text, limit));
        if *total > bytes.len() {
            log.push_str(&format!(
                "\n[... {} more bytes not kept]",
                total - bytes.len()
            ));
        }
        if !log.ends_with('\n') {
            log.push('\n');
        }
    }
    log
}
