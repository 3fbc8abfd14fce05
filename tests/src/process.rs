//! Real processes started by tests, stopped (with their children) on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A child process in its own process group. Its stdout lines are copied to
/// `<artifacts>/<name>.log` and can be awaited with [`Service::wait_for_line`];
/// stderr goes to the same log. Dropping it stops the whole group: SIGTERM, then
/// SIGKILL after a grace period.
pub struct Service {
    name: String,
    child: Child,
    lines: Receiver<String>,
    log: PathBuf,
}

impl Service {
    pub fn spawn(mut command: Command, name: &str, artifacts: &Path) -> anyhow::Result<Self> {
        let log = artifacts.join(format!("{name}.log"));
        let stderr = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone()?)
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!(
                    "could not start {name} ({:?}): is it installed? scripts/setup installs every tool",
                    command.get_program()
                )
            })?;
        let stdout = child
            .stdout
            .take()
            .context("child stdout was not captured")?;
        let (tx, lines) = channel();
        let mut copy = stderr;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(copy, "{line}");
                // Nobody may wait for lines any more; the log still gets them.
                let _ = tx.send(line);
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            lines,
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits until the process's log (stdout and stderr) holds `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .contains(needle)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} never logged {needle:?} (see {})",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a stdout line matching `pred` and returns it.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{} printed no expected line within {timeout:?}; see {}",
                    self.name,
                    self.log.display()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    bail!(
                        "{} closed its output (exit status {status:?}); see {}",
                        self.name,
                        self.log.display()
                    )
                }
            }
        }
    }

    /// Sends `signal` to the process (not its group).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, signal).with_context(|| format!("signalling {}", self.name))
    }

    /// Kills the whole process group at once (SIGKILL): a crash, with no
    /// chance to clean up.
    pub fn kill_group(&mut self) -> anyhow::Result<()> {
        let group = Pid::from_raw(i32::try_from(self.child.id())?);
        killpg(group, Signal::SIGKILL).with_context(|| format!("killing {}", self.name))?;
        let _ = self.child.wait();
        Ok(())
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn stop_group(&mut self) {
        let Ok(raw) = i32::try_from(self.child.id()) else {
            return;
        };
        let group = Pid::from_raw(raw);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        // Children of the leader (the app under WebKitWebDriver) may outlive it.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop_group();
    }
}
