//! The spawn of real programs: what the child gets and how failures come back.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn spec(program: &str, args: &[&str], env: &[(&str, &str)]) -> Spec {
    Spec {
        program: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        cwd: None,
    }
}

/// Runs `spec` with `input` on stdin; its exit status, stdout and progress output.
async fn run(spec: &Spec, input: &[u8]) -> io::Result<(ExitStatus, String, String)> {
    run_awaited(spec, input, true).await
}

async fn run_awaited(
    spec: &Spec,
    input: &[u8],
    pidfds: bool,
) -> io::Result<(ExitStatus, String, String)> {
    let (progress_r, progress_w) = pipe_pair()?;
    let mut child = spawn_awaited(spec, &progress_w, pidfds)?;
    drop(progress_w);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await?;
    drop(stdin);
    let (mut out, mut progress) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await?;
    pipe::Receiver::from_owned_fd(progress_r)?
        .read_to_string(&mut progress)
        .await?;
    Ok((child.wait().await?, out, progress))
}

#[tokio::test]
async fn a_program_gets_its_stdio_progress_descriptor_group_and_environment() {
    let script = "cat; echo \" $A\"; echo 40 >&3; \
                  [ \"$(cut -d' ' -f5 /proc/$$/stat)\" -eq $$ ] && echo own-group";
    let s = spec(
        "sh",
        &["-c", script],
        &[("PATH", "/usr/bin:/bin"), ("A", "b")],
    );
    let (status, out, progress) = run(&s, b"payload").await.unwrap();
    assert!(status.success(), "{status} {out}");
    assert_eq!(out, "payload b\nown-group\n");
    assert_eq!(progress, "40\n");
}

#[tokio::test]
async fn the_program_is_looked_up_in_the_childs_path_and_runs_in_cwd() {
    let dir = std::env::temp_dir().join(format!("ordinaut-spawn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("no-shebang");
    std::fs::write(&script, "pwd\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("/nonexistent:{}", dir.display());
    let mut s = spec("no-shebang", &[], &[("PATH", &path)]);
    s.cwd = Some(dir.clone());
    // A script without `#!` is run by /bin/sh, as execvp does.
    let (status, out, _) = run(&s, b"").await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(status.success());
    assert_eq!(out.trim_end(), dir.to_str().unwrap());
}

#[tokio::test]
async fn a_missing_program_or_cwd_is_an_error_and_a_signal_is_a_status() {
    let missing = spec("surely-no-such-program", &[], &[("PATH", "/bin")]);
    let e = run(&missing, b"").await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    let mut elsewhere = spec("true", &[], &[]);
    elsewhere.cwd = Some("/nonexistent".into());
    assert_eq!(
        run(&elsewhere, b"").await.err().unwrap().kind(),
        io::ErrorKind::NotFound
    );
    let killed = spec("/bin/sh", &["-c", "kill -9 $$"], &[]);
    let (status, _, _) = run(&killed, b"").await.unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[tokio::test]
async fn without_pidfds_a_thread_awaits_the_exit_and_a_dropped_child_is_killed() {
    let exits = spec("sh", &["-c", "exit 3"], &[]);
    let (status, _, _) = run_awaited(&exits, b"", false).await.unwrap();
    assert_eq!(status.code(), Some(3));
    let (_progress_r, progress_w) = pipe_pair().unwrap();
    for pidfds in [true, false] {
        let child = spawn_awaited(
            &spec("sleep", &["30"], &[("PATH", "/usr/bin:/bin")]),
            &progress_w,
            pidfds,
        )
        .unwrap();
        let pid = child.id();
        drop(child);
        // Killed and reaped (by the runtime or the thread): soon no such process.
        let started = std::time::Instant::now();
        // SAFETY: kill(2) with signal 0 only checks that the pid exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(started.elapsed().as_secs() < 5, "pid {pid} still there");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
