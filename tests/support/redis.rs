//! A real redis-server for session-store tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server (no persistence, no TCP port) on a unix socket in a short temp dir under
/// /tmp; it can be stopped and started again on the same socket, and is stopped on drop.
pub struct Redis {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts it and waits (up to 10 s) for its socket.
    pub fn start() -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("rr")
            .tempdir_in("/tmp")
            .unwrap();
        let mut r = Redis { child: None, dir };
        r.restart();
        r
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// `redis+unix://<socket>`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.sock().display())
    }

    /// SIGTERM by pid, wait, and remove the socket.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.sock());
    }

    /// Stops it if running, then starts a fresh (empty) server on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(self.sock())
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.sock().exists() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
