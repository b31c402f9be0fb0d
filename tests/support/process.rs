//! Child processes of the tests (the OpenID provider, `rampart` subcommands, nginx...):
//! output collected for failure messages, an optional "ready" line waited for, and a
//! SIGTERM by the child's own pid on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process stopped (SIGTERM by its own pid, then SIGKILL after 10 s) on drop; its
/// stdout and stderr are collected for messages.
pub struct Proc {
    pub child: Child,
    name: &'static str,
    log: Arc<Mutex<String>>,
}

impl Proc {
    /// Spawns `cmd` (stdout and stderr piped and collected). With `ready_prefix`, waits up to
    /// 20 s for a stdout line starting with it and returns the rest of that line (trimmed);
    /// panics with the output so far if none comes. Without, returns an empty string at once.
    pub fn spawn(
        name: &'static str,
        mut cmd: Command,
        ready_prefix: Option<&str>,
    ) -> (Proc, String) {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut g = l2.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let prefix = ready_prefix.map(str::to_string);
        let l3 = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(p) = &prefix {
                    if !sent && line.starts_with(p.as_str()) {
                        let _ = tx.send(line[p.len()..].trim().to_string());
                        sent = true;
                        continue;
                    }
                }
                let mut g = l3.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let mut p = Proc { child, name, log };
        let rest = match ready_prefix {
            None => String::new(),
            Some(_) => match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(r) => r,
                Err(_) => {
                    let _ = p.child.kill();
                    panic!("{name} did not become ready; output:\n{}", p.log());
                }
            },
        };
        (p, rest)
    }

    /// Everything the process wrote so far (stdout lines other than the ready line, stderr).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM by pid and wait up to 10 s; then SIGKILL and reap.
    pub fn stop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
        let _ = self.name;
    }
}

/// Waits up to 20 s for `127.0.0.1:port` to accept connections; `what` names the listener in
/// the panic message.
pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(30));
    }
}
