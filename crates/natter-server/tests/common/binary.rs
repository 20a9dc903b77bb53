//! The real `natter-server` binary as a child process, its log read line by line.

use super::{LIMIT, within};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The real binary, started in `dir` (where its default store file goes), its log lines
/// arriving on a channel.
pub struct Binary {
    pub child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
}

impl Binary {
    pub fn start(dir: &std::path::Path, args: &[&str]) -> Binary {
        Binary::spawn(Command::new(env!("CARGO_BIN_EXE_natter-server")), dir, args)
    }

    /// Started as an unprivileged user: as `nobody` (from a copy of the binary in `dir`, which
    /// it must be able to enter) when the tests run as root, whom file modes do not stop.
    pub fn start_unprivileged(dir: &std::path::Path, args: &[&str]) -> Binary {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
            return Binary::start(dir, args);
        }
        let copy = dir.join("natter-server");
        std::fs::copy(env!("CARGO_BIN_EXE_natter-server"), &copy).unwrap();
        let mut runuser = Command::new("runuser");
        runuser.args(["-u", "nobody", "--"]).arg(copy);
        Binary::spawn(runuser, dir, args)
    }

    fn spawn(mut command: Command, dir: &std::path::Path, args: &[&str]) -> Binary {
        let mut child = command
            .args(["127.0.0.1", "0"])
            .args(args)
            .current_dir(dir)
            // `-v` is the binary's own way to ask for debug lines; the filter would win.
            .env(
                "RUST_LOG",
                if args.contains(&"-v") {
                    "debug"
                } else {
                    "info"
                },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Binary {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The address it listens on, from its log.
    pub async fn addr(&mut self) -> String {
        within(async {
            loop {
                let line = self.lines.recv().await.expect("server exited");
                self.log.push(line.clone());
                if let Some(rest) = line.split("listening on ").nth(1) {
                    break rest.split(';').next().unwrap().to_owned();
                }
            }
        })
        .await
    }

    /// Reads its log until a line containing `needle`; returns that line.
    pub async fn until_log(&mut self, needle: &str) -> String {
        within(async {
            loop {
                let line = self.lines.recv().await.expect("server exited");
                self.log.push(line.clone());
                if line.contains(needle) {
                    break line;
                }
            }
        })
        .await
    }

    /// Waits for it to exit; its status and everything it printed. A binary that does not
    /// exit within the limit fails the test (and is killed) instead of hanging it.
    pub async fn exit(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id();
        let mut child = self.child;
        let waited =
            tokio::time::timeout(LIMIT, tokio::task::spawn_blocking(move || child.wait())).await;
        let Ok(status) = waited else {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!(
                "the server did not exit within {LIMIT:?}; it printed:\n{}",
                self.log.join("\n")
            );
        };
        let status = status.unwrap().unwrap();
        while let Ok(Some(line)) = tokio::time::timeout(LIMIT, self.lines.recv()).await {
            self.log.push(line);
        }
        (status, self.log.join("\n"))
    }
}
