//! A real redis-server (the Debian package) on a free loopback port, with no
//! persistence: the relay of change notices between proxy instances.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::net::free_port;
use crate::process::Service;

pub struct Redis {
    pub port: u16,
    artifacts: std::path::PathBuf,
    service: Option<Service>,
}

impl Redis {
    pub fn start(artifacts: &Path) -> anyhow::Result<Self> {
        let mut redis = Self {
            port: free_port()?,
            artifacts: artifacts.to_path_buf(),
            service: None,
        };
        redis.resume()?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (an outage).
    pub fn stop(&mut self) {
        self.service = None;
    }

    /// Starts it again on the same port.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
        let mut service = Service::spawn(cmd, "redis", &self.artifacts)?;
        service.wait_for_line(Duration::from_secs(20), |l| {
            l.contains("Ready to accept connections")
        })?;
        self.service = Some(service);
        Ok(())
    }
}
